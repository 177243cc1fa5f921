import io
import subprocess
import sys
import tarfile
from pathlib import Path

out = Path(sys.argv[1])
W = Path("/tmp/w")
with tarfile.open(out / "results.tgz", "w:gz") as t:
    for p in ("results", "p", "logs", "status.json", "jobs.log"):
        if (W / p).exists():
            t.add(W / p, arcname=p)
keep_phi = ("07_open_questions/paired_seen/base/meta", "07_open_questions/paired_all/base/meta")


def wanted(path: Path) -> bool:
    s = str(path)
    if "/epoch-" in s or "optimizer" in path.name or path.name.startswith(".") :
        return False
    if path.suffix == ".safetensors" or path.suffix == ".pt":
        return any(k in s for k in keep_phi) and path.name == "phi.safetensors"
    return True


buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as t:
    for p in sorted(Path("runs").rglob("*")):
        if p.is_file() and wanted(p) and not str(p).startswith("runs/cpu/03_meta_training"):
            t.add(p)
data = buf.getvalue()
print(f"runs archive {len(data) / 2**20:.1f} MiB")
part = 15 * 2**20
for i in range(0, len(data), part):
    (out / f"runs.tgz.{i // part:02d}").write_bytes(data[i:i + part])
subprocess.run(["ls", "-la", str(out)])
