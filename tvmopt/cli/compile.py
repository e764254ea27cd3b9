"""`tvmopt compile MODEL -t TARGET -o DIR`: apply the best records and build an artifact."""

from __future__ import annotations

import sys

from .common import batch_sizes_arg, import_from_args, log_arg, model_args, target_arg


def register(sub) -> None:
    p = sub.add_parser("compile", help="apply the best tuning records and build an artifact",
                       description="Build MODEL for a target into an artifact directory (library + manifest.json). "
                                   "Kernels without a tuning record get TVM's default schedule.")
    model_args(p)
    batch_sizes_arg(p)
    target_arg(p)
    log_arg(p)
    p.add_argument("--no-tuning", action="store_true", help="ignore tuning logs (untuned build)")
    p.add_argument("-o", "--output", help="artifact directory (default: artifacts/<model>-<target>)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..compiler import compile as compile_model, default_output
    from ..targets import get_target

    model = import_from_args(args)
    spec = get_target(args.target)
    output = args.output or default_output(model, spec)
    artifact = compile_model(model, spec, output, log_root=None if args.no_tuning else args.log_dir)
    manifest = artifact.manifest
    tuning = manifest.tuning
    buckets = f"; batch sizes {','.join(map(str, manifest.batch_buckets.sizes))}" if manifest.batch_buckets else ""
    print(f"wrote {artifact.path} ({spec.name}; {tuning.tasks_tuned}/{tuning.tasks_total} kernels tuned, "
          f"build {manifest.build_s} s{buckets})")
    if tuning.reference_logs:
        print(f"{tuning.borrowed()} kernel(s) use records of the compatible reference log(s) "
              f"{', '.join(tuning.reference_logs)} (zero tuning for them)")
    if tuning.tasks_total and tuning.untuned:
        from ..logs.store import is_log

        # schedules_borrowed counts kernel functions, `untuned` distinct tasks (repeated layers share one)
        borrowed, sampled = len(tuning.schedules_borrowed), len(tuning.schedules_sampled)
        parts = []
        if borrowed:
            parts.append(f"{borrowed} kernel function(s) among them run the schedule of a tuned kernel with the same "
                         "blocks or a part of them (tile sizes redrawn to fit)")
        if sampled:
            parts.append(f"{sampled} GEMM/conv-like kernel function(s) that no tuned kernel fits run an untuned "
                         "sample of the tuning space (parallel, vectorized)")
        how = ", ".join(parts) + ", any other TVM's default schedule" if parts else "they use TVM's default schedule"
        if not is_log(tuning.log_dir):
            print(f"note: there is no tuning log at {tuning.log_dir} (is --log-dir {args.log_dir} right? `tvmopt tune` "
                  f"writes it): {tuning.untuned} kernel(s) have no record; {how}", file=sys.stderr)
        else:
            print(f"note: the log {tuning.log_dir} holds no record for {tuning.untuned} of this model's "
                  f"{tuning.tasks_total} kernel(s); {how} (`tvmopt tune` them for speed)", file=sys.stderr)
    elif not args.no_tuning and not tuning.tasks_total and not model.is_static:
        print("note: the model has dynamic dims, so no tuning record applies (fix them with --input-shape to use "
              "tuned kernels)", file=sys.stderr)
    return 0
