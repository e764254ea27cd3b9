"""`tvmopt targets [show NAME]`."""

from __future__ import annotations

import json

from .common import table


def register(sub) -> None:
    p = sub.add_parser("targets", help="list the target registry, or show one target",
                       description="List targets (targets/*.json), or print one with `targets show NAME`.")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="target to show")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import TargetError
    from ..targets import get_target, list_targets

    if args.action == "show":
        if not args.name:
            raise TargetError("targets show: name a target, e.g. `tvmopt targets show x86-avx2`")
        spec = get_target(args.name)
        print(json.dumps(spec.to_json() | {"log_name": spec.log_name, "file": spec.source}, indent=2))
        return 0
    rows = [(s.name, s.device, "yes" if s.is_local_cpu else "no", _supports(s.supports), s.description)
            for s in list_targets()]
    table(("name", "device", "runs here", "supports", "description"), rows)
    return 0


def _supports(caps) -> str:
    """'int8:vnni bf16 fp16' — what the target computes natively (see `targets show`)."""
    parts = [f"int8:{caps.int8_dot}"] if caps.int8_dot else []
    parts += [name for name, on in (("bf16", caps.bf16), ("fp16", caps.fp16)) if on]
    return " ".join(parts) or "-"
