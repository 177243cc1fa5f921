"""Run the cpu profile's long work on one GPU: 4 notebook runs + pieces that warm their run folders.

Run folders are locked per run (trainattn.protocols.store), so a notebook that reaches a run a piece is
computing waits and reads it back. Stops everything at the deadline (epoch seconds, argv[1]).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

END = float(sys.argv[1])
SLOTS = int(sys.argv[2]) if len(sys.argv) > 2 else 12
W = Path("/tmp/w")
LOGS = W / "logs"
LOGS.mkdir(parents=True, exist_ok=True)
PY = sys.executable
T = os.environ["TAILORED"]
NB = [PY, "scripts/run_notebook_plain.py"]


def nb(stem, *sets, results=None):
    path = results or f"{W}/results/cpu/{stem}.json"
    return NB + [f"notebooks/{stem}.ipynb", "--profile", "cpu", "--results-path", path, "--set", *sets]


finals = {
    "F04": nb("04_lama_ckl", "device=cuda"),
    "F05": nb("05_temporalwiki", "profile=cpu"),
    "F06": nb("06_ablations", "device=cuda"),
    "F07": nb("07_open_questions", "device=cuda"),
}
pieces = {}
for s in ("depth_all", "rank_64", "depth_2", "rank_4"):
    pieces[f"q07_{s}"] = [PY, "scripts/device/piece.py", f"scaling:{s}", "--results-path", f"{W}/p/x.json", "--set", "device=cuda"]
for v in ("untracked_3", "phi_depth", "untracked_0", "sgd", "change3", "known_masking"):
    pieces[f"a06_{v}"] = nb("06_ablations", "device=cuda", f"variants=[{v}]", "reference_method=null",
                            results=f"{W}/p/06_{v}.json")
for s in ("paired_seen", "self_probe", "document_change3"):
    pieces[f"q07_{s}"] = [PY, "scripts/device/piece.py", s, "--results-path", f"{W}/p/x.json", "--set", "device=cuda"]
for m in ("taalm", "rho1"):
    pieces[f"t05_{m}"] = nb("05_temporalwiki", f"methods=[{m}]", results=f"{W}/p/05_{m}.json")
for m in ("taalm", "oracle", "finetune", "heuristic-loss", "heuristic-gradnorm", "heuristic-attention",
          "heuristic-entity", "rho1"):
    pieces[f"q07_ref_{m}"] = [PY, "scripts/device/piece.py", f"reference:{m}", "--results-path", f"{W}/p/x.json",
                              "--set", "device=cuda"]
grid = [PY, "-m", "trainattn.cli", "ckl-grid", "--config", "configs/lama_ckl_cpu.yml", "--phi",
        "runs/cpu/03_meta_training", "--out", "runs/cpu/lama_ckl", "--tailored", T, "--device", "cuda"]
order = [(s, m) for s in (0, 1, 2) for m in ("finetune", "oracle", "rho1", "mixreview", "recadam", "kadapter", "taalm")]
order += [(0, m) for m in ("taalm+kadapter", "taalm+mixreview", "taalm+recadam")]
for s, m in reversed(order):  # the notebook walks the grid forwards; pieces start from the end
    pieces[f"g04_s{s}_{m}"] = grid + ["--methods", m, "--seeds", str(s)]

running, status = {}, {}


def launch(name, cmd):
    log = open(LOGS / f"{name}.log", "w")
    running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True), time.time())
    print(f"[{time.strftime('%X')}] start {name}", flush=True)


for name, cmd in finals.items():
    launch(name, cmd)
queue = list(pieces.items())
while running:
    for name, (proc, t0) in list(running.items()):
        if proc.poll() is not None:
            status[name] = {"rc": proc.returncode, "seconds": round(time.time() - t0)}
            print(f"[{time.strftime('%X')}] {name} rc={proc.returncode} {time.time() - t0:.0f}s", flush=True)
            del running[name]
    n_pieces = sum(1 for n in running if n not in finals)
    while queue and n_pieces < SLOTS and time.time() < END - 60:
        launch(*queue.pop(0))
        n_pieces += 1
    if time.time() > END:
        for name, (proc, t0) in running.items():
            os.killpg(proc.pid, signal.SIGKILL)
            status[name] = {"rc": "killed at deadline", "seconds": round(time.time() - t0)}
            print(f"killed {name}", flush=True)
        break
    time.sleep(2)
status["_not_started"] = [n for n, _ in queue]
(W / "status.json").write_text(json.dumps(status, indent=1))
print(json.dumps(status, indent=1))
