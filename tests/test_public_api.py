"""emblab uses Lightning's public API only: no attribute or method of a Lightning object whose name starts
with an underscore, anywhere in src/ (a private name can change in any release)."""

from __future__ import annotations

import re

from conftest import ROOT

# a Lightning object's private member: trainer._x, self._trainer, opt._on_before_step(), ..._logger_connector
PRIVATE = re.compile(
    r"\b(t|trainer|_trainer|opt|optimizer|lightning_module|strategy|precision_plugin|fit_loop|"
    r"epoch_loop|pl_module|self)\._(?!_)(?!on_cpu\b|fs\b)([a-z]\w*)"
)


def test_no_private_lightning_names_in_src():
    hits = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for m in PRIVATE.finditer(line):
                obj, name = m.groups()
                if obj == "self" and name not in (
                    "trainer",
                    "fabric",
                    "device",
                    "dtype",
                    "current_fx_name",
                    "metric_attributes",
                    "register_load_state_dict_pre_hook",
                    "jit_is_scripting",
                    "compiler_ctx",
                ):
                    continue  # our own self._helpers
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "private Lightning names:\n" + "\n".join(hits)
