"""What `bench.peers` reports: one record per server run, and the Markdown table of them.

Every figure is shown as the median (min–max) over the rounds, so that one noisy round
shows as a wide range instead of moving the headline number.
"""

from dataclasses import dataclass
from statistics import median

from bench.peer_client import Figures
from bench.peer_servers import ServerSpec
from bench.peer_setup import PEERS, PeerInstall


@dataclass
class Run:
    """One fresh server process under one client count, in one round."""

    server: str
    clients: int
    round: int
    load_1m: float  # os.getloadavg()[0] just before the server started
    figures: Figures | None = None  # None when the server failed
    decode_tokens: int | None = None  # completion tokens of the decode probe
    decode_tokens_per_s: float | None = None  # (tokens - 1) / (end - first token)
    decode_error: str | None = None  # why the decode probe failed, if it did
    timed_out: bool = False  # --run-timeout ended it before every request was sent
    error: str | None = None  # why the server did not start or answer

    def line(self) -> str:
        head = f"round {self.round} {self.server} x{self.clients} (load {self.load_1m:.2f}): "
        if self.figures is None:
            return head + f"FAILED: {self.error}"
        f = self.figures
        decode = (
            f", decode {self.decode_tokens_per_s:.1f} tok/s" if self.decode_tokens_per_s else ""
        )
        return head + (
            f"{f.requests_ok} ok, {f.requests_failed} failed in {f.wall_s:.0f} s; "
            f"{f.output_tokens_per_s:.1f} tok/s; TTFT p50 {fmt(f.ttft_p50_s)} s; "
            f"cached {fmt(f.cached_tokens)}{decode}" + (" [TIMED OUT]" if self.timed_out else "")
        )


# -- the report --------------------------------------------------------------------------

COLUMNS = [  # (header, Figures field or Run field)
    ("output tok/s", "output_tokens_per_s"),
    ("requests/s", "requests_per_s"),
    ("TTFT p50, s", "ttft_p50_s"),
    ("TTFT p95, s", "ttft_p95_s"),
    ("cached prompt tokens", "cached_tokens"),
    ("decode tok/s, 1 stream", "decode_tokens_per_s"),
]


def spread(values: list[float | int | None]) -> str:
    """Median (min–max) over the rounds that have the figure; `n/a` if none has it."""
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    if len(present) == 1:
        return fmt(present[0])
    return f"{fmt(median(present))} ({fmt(min(present))}–{fmt(max(present))})"


def fmt(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.3g}"


def figure(run: Run, key: str) -> float | int | None:
    if key == "decode_tokens_per_s":
        return run.decode_tokens_per_s
    return getattr(run.figures, key) if run.figures else None


def report(runs: list[Run], servers: list[str], broken: dict[str, str]) -> str:
    """A Markdown table: one row per server and client count, median (min–max) of rounds."""
    lines = ["| server | clients | " + " | ".join(h for h, _ in COLUMNS) + " |"]
    lines.append("|---|---:|" + "---:|" * len(COLUMNS))
    for server in servers:
        for clients in sorted({run.clients for run in runs}):
            mine = [r for r in runs if r.server == server and r.clients == clients]
            cells = [spread([figure(r, key) for r in mine]) for _, key in COLUMNS]
            if clients != 1:
                cells[-1] = "–"  # measured in the single-client process only
            lines.append(f"| {server} | {clients} | " + " | ".join(cells) + " |")
    failed = [f"- {r.server} x{r.clients} round {r.round}: {r.error}" for r in runs if r.error]
    failed += [f"- {name}: {error}" for name, error in broken.items()]
    loads = ", ".join(f"{r.load_1m:.2f}" for r in runs)
    lines += ["", f"1-minute load before each run: {loads or 'none ran'}"]
    return "\n".join(lines + (["", "Failures:", *failed] if failed else []))


def notes(specs: list[ServerSpec], installs: dict[str, PeerInstall]) -> str:
    """The set-up of each server, for the lines under the table in docs/benchmarks.md."""
    lines = [f"- {spec.name}: {spec.options}" for spec in specs]
    return "\n".join(lines + [install_note(record) for record in installs.values()])


def install_note(record: PeerInstall) -> str:
    """How a peer was installed: what pip was given, with which build settings, how long."""
    if not record.ok:
        return f"- {record.name}: not installed (see the failures above)"
    wanted = " ".join(r for r in record.requirements if not r.startswith("--verbose"))
    env = "".join(f"{k}={v!r} " for k, v in record.build_env.items())
    line = f"- {record.name} {record.version}: {env}pip install {wanted} ({record.seconds:.0f} s)"
    if PEERS[record.name].remove:
        line += f", then pip uninstall {' '.join(PEERS[record.name].remove)}"
    if record.system_info:
        line += f"; llama.cpp system info: {record.system_info}"
    return line
