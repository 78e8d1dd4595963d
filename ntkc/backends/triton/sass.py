"""Counting SASS: instructions by pipe class, loops found and weighted by their trip counts.

1. `parse` lists the instructions of nvdisasm's output in order (predicates stripped, opcode
   before the first dot) and the index of each label.
2. Loops are the backward branches of the SASS (`sass_loops`), nested by containment. They are
   matched in order and nesting with the run-time `for ... in range(...)` loops of the kernel's
   source (`source_loops`), whose trip counts the generator knows (layer repetitions, partial-sum
   blocks; constexprs evaluated). Constant loops of at most UNROLLED_TRIPS trips may have been
   unrolled and are dropped from the match; any other mismatch is reported as a problem, never
   guessed.
3. `weighted_counts`: each instruction counts once per execution by a warp (predicated-off ones
   issue too), times the trips of the loops around it.
"""
from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field

# opcode -> pipe class (sm_80 / sm_90)
CLASSES = {
    "fp32": {"FFMA", "FADD", "FMUL", "FFMA32I", "FADD32I", "FMUL32I", "FSWZADD", "HFMA2", "HADD2", "HMUL2"},
    "fp64": {"DFMA", "DADD", "DMUL", "DSETP", "DMNMX"},
    "mufu": {"MUFU"},
    "alu": {"FMNMX", "FSEL", "FSETP", "FCHK", "ISETP", "LOP3", "IADD3", "SHF", "SEL", "PRMT", "PLOP3", "LEA",
            "IMNMX", "VIADD", "IABS", "FLO", "POPC", "BMSK", "SGXT", "MOV", "P2R", "R2P", "LOP", "IADD", "VIMNMX"},
    "imad": {"IMAD", "IMUL", "IMAD32I"},
    "conv": {"I2F", "F2I", "F2F", "I2FP", "F2FP", "FRND"},
    "shfl": {"SHFL"},
    "lsu": {"LDG", "STG", "LDS", "STS", "LDL", "STL", "LD", "ST", "ATOM", "ATOMG", "RED", "LDSM", "STSM", "LDGSTS"},
    "uniform": {"S2R", "S2UR", "R2UR", "CS2R", "LDC", "ULDC", "UMOV", "UIADD3", "UISETP", "USHF", "ULEA", "ULOP3",
                "UIMAD", "USEL", "UPRMT", "UFLO", "UPOPC", "UBMSK", "USGXT", "ULOP", "UIADD", "VOTEU"},
    "branch": {"BRA", "EXIT", "BAR", "BSSY", "BSYNC", "CALL", "RET", "WARPSYNC", "NOP", "YIELD", "DEPBAR", "MEMBAR",
               "ERRBAR", "CCTL", "BPT", "JMP", "BREAK", "VOTE"},
}
OPCLASS = {op: cls for cls, ops in CLASSES.items() for op in ops}
UNROLLED_TRIPS = 8  # a constant source loop of at most this many trips may be unrolled by LLVM


def opclass(op: str) -> str:
    return OPCLASS.get(op, "other")


@dataclass(frozen=True)
class Instr:
    op: str
    text: str


def parse(text: str) -> tuple[list[Instr], dict[str, int]]:
    """SASS instructions in order and the index of each label, from nvdisasm's output."""
    instrs, labels = [], {}
    for line in text.splitlines():
        m = re.match(r"\s*(\.L_x_\d+):", line)
        if m:
            labels[m.group(1)] = len(instrs)
            continue
        m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(.*?)\s*;", line)
        if m:
            body = re.sub(r"^@!?U?P[T\d]\s+", "", m.group(1).strip())
            instrs.append(Instr(body.split()[0].split(".")[0], m.group(1).strip()))
    return instrs, labels


@dataclass
class LoopNode:
    start: int
    end: int                    # index of the backward branch
    children: list = field(default_factory=list)


def sass_loops(instrs: list[Instr], labels: dict[str, int]) -> list[LoopNode]:
    """Top-level loops (backward branches), nested by containment, in program order."""
    found = []
    for i, ins in enumerate(instrs):
        if ins.op == "BRA":
            m = re.search(r"(\.L_x_\d+)", ins.text)
            if m and labels.get(m.group(1), i + 1) < i:  # (a branch to itself is the end-of-kernel trap)
                found.append(LoopNode(labels[m.group(1)], i))
    found.sort(key=lambda n: (n.start, -n.end))
    roots: list[LoopNode] = []
    stack: list[LoopNode] = []
    for n in found:
        while stack and not (stack[-1].start <= n.start and n.end <= stack[-1].end):
            stack.pop()
        (stack[-1].children if stack else roots).append(n)
        stack.append(n)
    return roots


@dataclass
class SrcLoop:
    trips: object               # int, or the name of a run-time count such as "n_iters"
    children: list = field(default_factory=list)


def source_loops(source: str, fn_name: str, env: dict) -> list[SrcLoop]:
    """Run-time loops of a kernel's source (`for v in range(...)`, not static_range), nested by
    indentation; trip counts evaluated with `env` (constexprs), names kept when unknown."""
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"def {fn_name}\(", line))
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"(@|def |class )", lines[i])), len(lines))
    roots: list[SrcLoop] = []
    stack: list[tuple[int, SrcLoop]] = []
    for line in lines[start:end]:
        m = re.match(r"(\s*)for \w+ in range\((.*)\):", line)
        if not m:
            continue
        indent, args = len(m.group(1)), m.group(2)
        try:
            trips = len(range(*eval(f"({args},)", {"__builtins__": {}}, dict(env))))
        except Exception:
            trips = args.split(",")[-1].strip() if "," in args else args.strip()
        node = SrcLoop(trips)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        (stack[-1][1].children if stack else roots).append(node)
        stack.append((indent, node))
    return roots


def _short(s: SrcLoop) -> bool:
    return isinstance(s.trips, int) and s.trips <= UNROLLED_TRIPS and not s.children


def match(sass: list[LoopNode], src: list[SrcLoop], problems: list[str]) -> list[tuple[LoopNode, SrcLoop]]:
    """Pairs (SASS loop, source loop), in order and nesting; mismatches go to `problems`."""
    if len(sass) < len(src):  # drop short constant loops that the compiler unrolled
        short = [s for s in src if _short(s)]
        while len(src) > len(sass) and short:
            src = [s for s in src if s is not short[0]]
            short.pop(0)
    if len(sass) != len(src):
        problems.append(f"{len(sass)} SASS loop(s) against {len(src)} source loop(s) at one level")
    out = []
    for a, b in zip(sass, src):
        out.append((a, b))
        out += match(a.children, b.children, problems)
    return out


def weighted_counts(instrs, pairs, trips_env: dict, problems: list, window=None) -> collections.Counter:
    """Instructions per class for one execution of the kernel by one warp, each times the trips
    of the loops around it (a loop whose trips are a name takes its value from `trips_env`).
    `window` (start, end) counts only the instructions inside it."""
    mult = [1.0] * len(instrs)
    for node, src in pairs:
        t = src.trips if isinstance(src.trips, int) else trips_env.get(src.trips)
        if t is None:
            problems.append(f"unknown trip count {src.trips!r}")
            t = 1
        for i in range(node.start, node.end + 1):
            mult[i] *= t
    lo, hi = window if window is not None else (0, len(instrs) - 1)
    total: collections.Counter = collections.Counter()
    for k in range(lo, hi + 1):
        total[opclass(instrs[k].op)] += mult[k]
    return total


def hot_loop(instrs, roots) -> dict | None:
    """The longest innermost loop body (the repeated layer block): instructions by class."""
    best = None

    def visit(n):
        nonlocal best
        if not n.children and (best is None or n.end - n.start > best.end - best.start):
            best = n
        for c in n.children:
            visit(c)

    for r in roots:
        visit(r)
    if best is None:
        return None
    body = instrs[best.start:best.end + 1]
    return {"instructions": len(body), "classes": dict(collections.Counter(opclass(i.op) for i in body)),
            "ops": dict(collections.Counter(i.op for i in body))}
