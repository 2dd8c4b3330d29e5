"""Sharded exact top-K evaluation on 2 ranks == brute force in one process (row_wise and
table_wise): same top-K items and the same metrics, against a plain per-user reference."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distributed import run_distributed

DIM, KS = 8, [5, 10]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from dsl_torchrec.data.synth import synth

    out = tmp_path_factory.mktemp("data") / "tiny"
    synth(users=40, items=53, interactions=900, out=out, seed=5)
    return out


def eval_worker(rank: int, world: int, data_dir: str, kind: str):
    from dsl_torchrec.config import load_config
    from dsl_torchrec.data.dataset import InteractionData
    from dsl_torchrec.eval.evaluate import evaluate_model, evaluate_popularity, item_slice_vectors
    from dsl_torchrec.eval.retrieval import csr_rows, item_range, sharded_topk
    from dsl_torchrec.model.build import build_sharded_model

    data = InteractionData(data_dir)
    cfg = load_config(None, [f"sharding.type={kind}", f"model.dim={DIM}", "train.seed=7"])
    sm = build_sharded_model(cfg, data.num_users, data.num_items, torch.device("cpu"))
    model = sm.module
    items = item_slice_vectors(model, data.num_items)
    lo, _ = item_range(data.num_items, rank, world)
    users = torch.arange(data.num_users)
    with torch.no_grad():
        q = model.user_vectors(users)
    ptr, idx = (torch.as_tensor(a) for a in data.user_item_csr("train"))
    ex_q, ex_i = csr_rows(ptr, idx, users)
    keep = (ex_i >= lo) & (ex_i < lo + items.shape[0])
    vals, top = sharded_topk(q @ items.T, lo, max(KS), ex_q[keep], ex_i[keep])
    return {
        "top": top, "vals": vals,
        "valid": evaluate_model(model, data, "valid", ["train"], KS, batch_size=7),
        "test": evaluate_model(model, data, "test", ["train", "valid"], KS, batch_size=7),
        "pop": evaluate_popularity(data, "test", ["train", "valid"], KS, batch_size=7),
    }


def _reference_metrics(scores: np.ndarray, data, split, exclude, ks):
    """Per-user loops over a dense score matrix: the obviously-correct version."""
    excl = {}
    for s in exclude:
        for u, i in zip(*data.split(s)):
            excl.setdefault(int(u), set()).add(int(i))
    target = {}
    for u, i in zip(*data.split(split)):
        target.setdefault(int(u), set()).add(int(i))
    sums = {f"{m}@{k}": 0.0 for m in ("recall", "ndcg", "precision", "hitrate", "mrr") for k in ks}
    for u, rel in target.items():
        s = scores[u].astype(np.float64).copy()
        for i in excl.get(u, ()):
            s[i] = -np.inf
        ranked = np.argsort(-s, kind="stable")
        for k in ks:
            top = ranked[:k]
            hits = [int(i) in rel for i in top]
            dcg = sum(1 / math.log2(j + 2) for j, h in enumerate(hits) if h)
            idcg = sum(1 / math.log2(j + 2) for j in range(min(len(rel), k)))
            sums[f"recall@{k}"] += sum(hits) / len(rel)
            sums[f"precision@{k}"] += sum(hits) / k
            sums[f"ndcg@{k}"] += dcg / idcg
            sums[f"hitrate@{k}"] += float(any(hits))
            sums[f"mrr@{k}"] += 1 / (hits.index(True) + 1) if any(hits) else 0.0
    return {k: v / len(target) for k, v in sums.items()}, len(target)


@pytest.mark.parametrize("kind", ["row_wise", "table_wise"])
def test_sharded_topk_matches_brute_force(tiny_dataset, kind):
    from dsl_torchrec.data.dataset import InteractionData
    from dsl_torchrec.model.build import seeded_rows

    data = InteractionData(tiny_dataset)
    results = run_distributed(eval_worker, 2, str(tiny_dataset), kind)
    # brute force from the same seeded tables (item = table 0, user = table 1)
    items = F.normalize(seeded_rows(7, 0, 0, data.num_items, DIM, 0.1), dim=-1)
    users = F.normalize(seeded_rows(7, 1, 0, data.num_users, DIM, 0.1), dim=-1)
    scores = (users @ items.T).numpy()
    masked = scores.copy()
    for u, i in zip(*data.split("train")):
        masked[u, i] = -np.inf
    kmax = max(KS)
    ref_top = np.argsort(-masked, axis=1, kind="stable")[:, :kmax]
    for res in results:
        top = res["top"].numpy()
        # same item sets, and the same scores in the same order (ties are measure-zero here)
        np.testing.assert_array_equal(top, ref_top)
        np.testing.assert_allclose(res["vals"].numpy(),
                                   np.take_along_axis(masked, ref_top, 1), rtol=1e-5, atol=1e-6)
        for split, exclude in (("valid", ["train"]), ("test", ["train", "valid"])):
            ref, n_users = _reference_metrics(scores, data, split, exclude, KS)
            assert res[split]["num_users"] == n_users
            for name, value in ref.items():
                assert res[split][name] == pytest.approx(value, abs=1e-9), (split, name)
    # popularity baseline: scores = training counts, ties to the lower id
    counts = data.item_counts("train").astype(np.float64)
    pop_scores = np.tile(-np.argsort(np.argsort(-counts, kind="stable"), kind="stable"),
                         (data.num_users, 1)).astype(np.float64)
    ref, _ = _reference_metrics(pop_scores, data, "test", ["train", "valid"], KS)
    for name, value in ref.items():
        assert results[0]["pop"][name] == pytest.approx(value, abs=1e-9), name
    assert results[0]["test"]["recall@10"] > 0  # non-vacuous: there are hits to compare
