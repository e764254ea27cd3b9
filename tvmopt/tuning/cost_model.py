"""The cost-model role: MetaSchedule's XGBoost model, optionally warm-started from existing logs."""

from __future__ import annotations

import tvm

from .._compat import ms
from ..logs.store import LogDatabase
from ..logs.workload import record_seconds, valid_run_seconds


def warm_cost_model(sources: list[LogDatabase], target: tvm.target.Target, num_threads: int,
                    per_workload: int = 24, limit: int = 800):
    """An XGBoost cost model trained on records already measured (other models, other targets).

    Stock MetaSchedule starts every session with an empty model that predicts random scores for
    its first 100 samples (XGBModel.num_warmup_samples), so the first batches of each task are
    picked blind. Here each source workload's records (its best ones plus an even spread of the
    rest, so the model sees both good and bad schedules) are replayed into candidates, their
    features extracted as the cost model would, grouped per workload (labels are min cost/cost
    within a workload, as XGBModel.update does), and the model is trained once (training time
    grows with the samples, hence the caps). Returns (model, records used).
    """
    import numpy as np
    from tvm.s_tir.meta_schedule.cost_model.xgb_model import FeatureGroup
    from tvm.s_tir.meta_schedule.utils import shash2hex

    model = ms.cost_model.XGBModel(num_tuning_cores=num_threads, adaptive_training=True)
    used = 0
    for database in sources:
        for mod in database.workload_modules():
            if used >= limit:
                continue
            records = [r for r in database.get_all_records_of(mod) if valid_run_seconds(r.run_secs)]
            if len(records) < 2:
                continue
            records.sort(key=lambda r: record_seconds(r.run_secs))
            keep = records[: per_workload // 2]
            rest = records[per_workload // 2:]
            step = max(1, len(rest) // max(1, per_workload - len(keep)))
            keep += rest[::step][: per_workload - len(keep)]
            context = ms.TuneContext(mod=mod, target=target, task_name="transfer", num_threads=num_threads)
            candidates, costs = [], []
            for record in keep:
                try:
                    sch = tvm.s_tir.Schedule(mod)
                    record.trace.apply_to_schedule(sch, remove_postproc=False)
                except Exception:  # noqa: BLE001 - a trace from another TVM build may not replay
                    continue
                candidates.append(ms.MeasureCandidate(sch, record.args_info))
                costs.append(record_seconds(record.run_secs))
            if len(candidates) < 2:
                continue
            features = [f.numpy().astype("float32") for f in model.extractor.extract_from(context, candidates)]
            pairs = [(f, c) for f, c in zip(features, costs) if len(f)]
            if not pairs:
                continue
            group_hash = shash2hex(mod)
            model.data[group_hash] = FeatureGroup(group_hash, [f for f, _ in pairs],
                                                  np.array([c for _, c in pairs], dtype="float32"))
            model.data_size += len(pairs)
            used += len(pairs)
    if model.data_size:
        xs = [f for group in model.data.values() for f in group.features]
        ys = np.concatenate([group.min_cost / group.costs for group in model.data.values()])
        # XGBModel.update trains only on new samples of the tuned tasks; this is its step 5 (train on
        # every group at once), called directly because there is no public "fit" for replayed data.
        model._train(xs=xs, ys=ys)  # noqa: SLF001
        model.last_train_size = model.data_size
    return model, used
