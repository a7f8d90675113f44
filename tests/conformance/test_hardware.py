"""This machine as a hardware profile: which CPU profile's power stands in for it, and the copy bandwidth."""

from __future__ import annotations

import pytest

from portarun_conformance.hardware import (LocalMeasurement, _matching_cpu_profile, copy_bandwidth, get_profile,
                                           local_profile)


@pytest.mark.parametrize("cpu,profile,why", [
    ("AMD EPYC 9654 96-Core Processor", "epyc-9654", "epyc-9654: the model this CPU reports"),
    ("Intel(R) Xeon(R) Platinum 8480+", "xeon-8480", "xeon-8480: the model this CPU reports"),
    ("INTEL(R) XEON(R) 6980P", "xeon-6980p", "xeon-6980p: the model this CPU reports"),
    ("AMD EPYC", "epyc-9654", "epyc-9654 assumed (the CPU reports no model)"),  # what many VMs report
    ("AMD EPYC 7763 64-Core Processor", "epyc-9654", "epyc-9654 assumed (model 7763 has no profile)"),
    ("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "xeon-8480", "xeon-8480 assumed (model 6338 has no profile)"),
])
def test_a_cpu_takes_its_own_models_profile_or_says_its_vendors_is_assumed(cpu, profile, why):
    found, said = _matching_cpu_profile(cpu)
    assert found is not None and found.name == profile
    assert said == why


def test_an_unknown_vendor_gets_no_power_figure_rather_than_a_guess():
    found, why = _matching_cpu_profile("Apple M2 Max")
    assert found is None and why == "no CPU profile matches"
    profile = local_profile(LocalMeasurement("Apple M2 Max", 4, 50.0, 100.0, 256, 32, 0.1))
    assert profile.tdp_w.value is None


def test_the_power_share_says_which_profile_it_came_from_and_why():
    profile = local_profile(LocalMeasurement("AMD EPYC 7763 64-Core Processor", 2, 20.0, 100.0, 256, 32, 0.1))
    base = get_profile("epyc-9654")
    assert profile.tdp_w.value == pytest.approx(base.tdp_w.value * 2 / base.cores)
    assert "epyc-9654 assumed (model 7763 has no profile)" in profile.tdp_w.source
    assert profile.tdp_w.tag == "I"  # inferred, not a measured or published figure for this CPU
    assert profile.bandwidth_tbs.value == pytest.approx(0.02)


@pytest.mark.parametrize("threads", [1, 2])
def test_copy_bandwidth_times_each_repeat(threads):
    rates = copy_bandwidth(4, repeats=3, threads=threads)
    assert len(rates) == 3 and all(rate > 0 for rate in rates)
