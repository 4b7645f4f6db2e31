"""The validated form of a recipe: one `Conversion` per `[[conversion]]` table, with its
`ProbeSettings`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ropeconv.recipes.problems import Problem, display_path
from ropeconv.request import ConversionRequest

@dataclass
class ProbeSettings:
    lengths: list[int] | None = None
    quick: bool = False
    passkey: bool = False
    depths: list[float] | None = None
    text: Path | None = None
    dataset: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_short_ratio: float | None = None
    max_beyond_ratio: float | None = None
    min_passkey_accuracy: float | None = None

    def thresholds(self):
        from ropeconv.probe.verdict import Thresholds

        return Thresholds.from_options(self.max_short_ratio, self.max_beyond_ratio, self.min_passkey_accuracy)

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if v is not None}
        if self.text is not None:
            out["text"] = str(self.text)
        return out

    def describe(self) -> str:
        what = (f"lengths {','.join(str(n) for n in self.lengths)}" if self.lengths
                else "quick lengths (4k and L0 × 1.5)" if self.quick else "default lengths (4k, 2×L0, served)")
        t = self.thresholds()
        parts = [what, f"device {self.device}", f"short ×{t.max_short_ratio:g}", f"beyond ×{t.max_beyond_ratio:g}"]
        if self.passkey:
            parts.append("passkey" + (f" ≥ {t.min_passkey_accuracy:.0%}" if t.min_passkey_accuracy is not None else ""))
        return ", ".join(parts)


@dataclass
class Conversion:
    """One validated conversion of a recipe file: the conversion request it makes (method, scale,
    parameters — validated by `ConversionRequest.build`), where its source is, and what happens to
    its output (probe, push)."""

    name: str
    file: Path
    line: int
    base_dir: Path  # relative paths are relative to the recipe file's folder
    source: str  # as written
    source_kind: str  # "smollm2", "local" or "hub"
    request: ConversionRequest  # output, force and dry_run are set by the batch run
    source_path: Path | None = None  # local sources
    repo_id: str | None = None  # Hub sources
    revision: str | None = None  # Hub sources: as written after '@' (None: main)
    output: Path | None = None  # None: <output dir>/<name>
    probe: ProbeSettings | None = None
    push_to: str | None = None
    private: bool = False
    push_revision: str | None = None  # the `revision` key: the branch to push to
    create_pr: bool = False
    normalised: dict = field(default_factory=dict)
    sha256: str = ""
    lines: dict = field(default_factory=dict)  # key -> line, for errors found later

    # The request's fields, as the recipe wrote them.
    @property
    def method(self) -> str:
        return self.request.method

    @property
    def factor(self) -> float | None:
        return self.request.factor

    @property
    def target_context(self) -> int | None:
        return self.request.target_context

    @property
    def original_context(self) -> int | None:
        return self.request.original_context

    @property
    def params(self) -> dict:
        return dict(self.request.params)

    @property
    def rebase(self) -> bool:
        return self.request.rebase

    @property
    def force(self) -> bool:
        return self.request.force

    @property
    def location(self) -> str:
        return f"{display_path(self.file)}:{self.line}"

    def where(self, key: str | None = None) -> str:
        return f"{display_path(self.file)}:{self.lines.get(key, self.line) if key else self.line}"

    def problem(self, key: str | None, message: str) -> Problem:
        return Problem(self.file, self.lines.get(key, self.line) if key else self.line, message)

    @property
    def source_spec(self) -> str:
        """What `ropeconv extend` is given (before a Hub revision is pinned to its sha)."""
        if self.source_kind == "hub":
            return f"{self.repo_id}@{self.revision}" if self.revision else str(self.repo_id)
        return str(self.source_path) if self.source_path else self.source

    def scale_text(self) -> str:
        over = f" over {self.original_context}" if self.original_context else ""
        rebase = " (rebase)" if self.rebase else ""
        if self.factor is not None:
            served = f" → {int(round(self.factor * self.original_context))}" if self.original_context else ""
            return f"{self.method} ×{self.factor:g}{over}{served}{rebase}"
        return f"{self.method} to {self.target_context}{over}{rebase}"

    def output_for(self, output_dir: Path) -> Path:
        return self.output if self.output is not None else output_dir / self.name

    def summary(self) -> dict:
        """The flat description `--list --json` gives (a CI matrix entry)."""
        return {"name": self.name, "file": display_path(self.file), "line": self.line, "source": self.source,
                "method": self.method, "factor": self.factor, "target_context": self.target_context,
                "original_context": self.original_context,
                "output": str(self.output) if self.output is not None else None,
                "probe": self.probe is not None, "push_to": self.push_to, "create_pr": self.create_pr,
                "recipe_sha256": self.sha256}

