"""experta 1.9.4 on Python 3.11: imports without touching the host's logging, and never fires stale activations."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO, SHARED, needs_shared


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_importing_radiopal_has_no_side_effects():
    proc = run_python(
        "import logging, sys; import radiopal; "
        "assert 'experta' not in sys.modules; assert not logging.getLogger().handlers; print('ok')"
    )
    assert proc.stdout.strip() == "ok", proc.stderr


def test_compiling_a_rule_base_leaves_the_host_logging_untouched():
    proc = run_python(
        "import logging, radiopal; rb = radiopal.load_rulebase(); "
        f"rb.evaluate({str(REPO / 'examples' / 'patient-mcrpc.yaml')!r}); "
        "root = logging.getLogger(); print(len(root.handlers), root.level)"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", str(30)]


def test_the_shipped_agenda_strategy_removes_the_exact_activation():
    from radiopal._experta import experta

    xp = experta()
    from radiopal._experta import exact_removal_strategy

    strategy = exact_removal_strategy()

    def make_engine():
        attrs = {"__strategy__": strategy}
        stale: list[int] = []

        def unblock(self, b):
            self.retract(b)

        attrs["unblock"] = xp.Rule(xp.AS.b << xp.Fact(block=xp.W()), salience=10)(unblock)

        def make_x(self):
            self.declare(xp.Fact(x=1))

        attrs["make_x"] = xp.Rule(xp.Fact(a=1), xp.NOT(xp.Fact(block=xp.W())), salience=5)(make_x)
        for i in range(6):
            def rhs(self, f, i=i):
                stale.append(i)

            rhs.__name__ = f"needs_no_x_{i}"
            attrs[rhs.__name__] = xp.Rule(xp.AS.f << xp.Fact(a=1), xp.NOT(xp.Fact(block=i)), xp.NOT(xp.Fact(x=1)))(rhs)
        return type("KE", (xp.KnowledgeEngine,), attrs)(), stale

    for _ in range(50):
        engine, stale = make_engine()
        engine.reset()
        engine.declare(xp.Fact(a=1), *[xp.Fact(block=i) for i in range(6)])
        engine.run()
        assert stale == []


@needs_shared
def test_the_shared_stale_activation_repro_passes_with_our_strategy():
    tool = SHARED / "tools" / "experta_stale_activation.py"
    proc = subprocess.run([sys.executable, str(tool), "radiopal._experta:ExactRemovalStrategy"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0/200 runs" in proc.stdout
