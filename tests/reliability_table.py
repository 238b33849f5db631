"""Write docs/RELIABILITY.md from the hostile-input suite's cases and the lines of one recorded run:

    GAUSSIANEM_RELIABILITY_LOG=/tmp/rel.jsonl python -m pytest -q tests/test_hostile_inputs.py
    python tests/reliability_table.py /tmp/rel.jsonl
"""

import importlib.util
import json
import re
import sys
from pathlib import Path

# the suite's case table, loaded from its file (its dataclasses need the module registered under its name)
_path = Path(__file__).with_name("test_hostile_inputs.py")
_spec = importlib.util.spec_from_file_location("test_hostile_inputs", _path)
t = sys.modules["test_hostile_inputs"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(t)

records = {}
for line in Path(sys.argv[1]).read_text().splitlines():
    r = json.loads(line)
    records[r["case"]] = r
out = []
out.append("# Reliability: what every bad, foreign or hostile input gets\n")
out.append("The fault-injection suite `tests/test_hostile_inputs.py` (issue 16) runs each case below through "
           "`gaussianem.cli.main` on a fresh copy of a tiny world (a simulation, the dataset preprocessed from it, a "
           "one-epoch run, cryoDRGN-style pickles) and asserts, for every case:\n")
out.append("- the exit code: **2** for bad input, **1** for a failure while running (a full disk, another writer);")
out.append("- exactly one line on stderr, `gaussianem COMMAND: error: ...`, naming the file or option and the cause, "
           "and no traceback;")
out.append("- the sha256 of every file of the world unchanged, and no file or folder added or removed: no output, no "
           "partial output, no staging folder, no temporary file, no lock file;")
out.append("- for the payload cases (marked ☠), that the payload did not run: it would have created a marker file.\n")
out.append("`ENOSPC`/`EACCES` are injected by making every write under the world fail (after the first few, where "
           "noted); the machine runs as root, so permissions cannot be used. The message column is the line of the "
           "last recorded run (`WS` = the world's copy); `tests/reliability_table.py` writes this page from such a run "
           "(see its docstring).\n")
out.append(f"{len(t.CASES)} cases; the exit codes and one-line rule are in docs/CONTRACTS.md (\"Exit codes and "
           "one-line failures\").\n")
out.append("| # | command | case | exit | the line on stderr |")
out.append("|---|---|---|---|---|")
for i, name in enumerate(sorted(t.CASES), 1):
    command, rc, _needle, payload, _fn = t.CASES[name]
    case = name.removeprefix(command + "-").replace("_", " ")
    rec = records.get(name)
    line = rec["line"] if rec else "(not recorded)"
    line = line.removeprefix(f"gaussianem {command}: error: ")
    line = re.sub(r"/tmp/pytest-of-[^ ]*?/ws", "WS", line).replace("|", "\\|")
    if len(line) > 220:
        line = line[:217] + "..."
    got = rec["rc"] if rec else rc
    out.append(f"| {i} | {command} | {case}{' ☠' if payload else ''} | {got} | {line} |")
out.append("")
out.append("Besides the table, the suite checks what must keep working: cryoDRGN's pickles under every protocol, "
           "an older checkpoint (numpy RNG state) that loads and resumes, `--resume` past a truncated newest "
           "checkpoint (named in a warning) ending bit-identical to an uninterrupted run, `train` killed (SIGKILL) "
           "while writing a checkpoint then resumed bit-identical (tests/test_train.py keeps the kill in an epoch), "
           "an MRC stack without the `MAP ` id read with a warning, `eval-vol --particles` with 300 indices, "
           "`--drop-bad` dropping an extreme pixel, the map/particle pixel-size warning, the sweeping of a killed "
           "run's leftovers, and the lock naming the other writer's pid.")
(Path(__file__).parents[1] / "docs" / "RELIABILITY.md").write_text("\n".join(out) + "\n")
print(len(t.CASES), len(records))
