#!/usr/bin/env bash
# Issue 7: DSL against a tuned SL, successive halving, selection on valid NDCG@20 only.
# Resumable: rerun the same stage and only unfinished points run. Usage:
#   DATA=data OUT=runs/issue7 bash bench/sweeps/issue7.sh STAGE   (stages: see the case at the end)
# DATA holds the prepared datasets (dsl-data prepare --format irb ...; the OOD split with
# dsl-data split --protocol ood-popularity); every point is one `dsl-train` run directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-data}; OUT=${OUT:-runs/issue7}
PY=${PY:-.venv/bin/python}
SMALL=(--data "beauty=$DATA/amazon2014-beauty" --data "ml100k=$DATA/movielens-100k-irb"
       --data "health=$DATA/amazon2014-health")
COMMON=(--config configs/amazon2014-health.yaml --nproc 1 --parallel 2
        --set train.epochs=40 --set train.batch_size=2048)
sweep() { "$PY" bench/quality_sweep.py --out "$OUT" "${COMMON[@]}" "$@"; }

# SL over the issue's grid, plus 0.4 because the grid's edge 0.3 was best on ml100k (and close
# on health): SL must not lose only because its grid stopped short
SL=()
for t in 0.025 0.05 0.1 0.2 0.3 0.4; do SL+=(--cell "sl-$t: loss.name=sl loss.temperature=$t"); done
D="loss.name=dsl loss.dro_scale=false loss.kappa_sim=0.0"
# rung 0: the knobs of dsl-loss.md, around the lead of a first coarse random search on health
RUNG0=(
  --cell "dsl-t0.3-kh-0.25-g0.5: $D loss.temperature=0.3 loss.kappa_hard=-0.25 loss.gamma=0.5"
  --cell "dsl-t0.3-kh-0.25: $D loss.temperature=0.3 loss.kappa_hard=-0.25 loss.gamma=0.0"
  --cell "dsl-t0.3-g0.5: $D loss.temperature=0.3 loss.kappa_hard=0.0 loss.gamma=0.5"
  --cell "dsl-t0.3-kh-0.25-g1: $D loss.temperature=0.3 loss.kappa_hard=-0.25 loss.gamma=1.0"
)
# beauty only (dropped from the larger sets after their beauty result)
RUNG0_BEAUTY=(
  --cell "dsl-t0.3-kh-0.5-g0.5: $D loss.temperature=0.3 loss.kappa_hard=-0.5 loss.gamma=0.5"
  --cell "dsl-t0.3-kh-0.25-g0.5-entropy: $D loss.temperature=0.3 loss.kappa_hard=-0.25 loss.gamma=0.5 loss.intensity=entropy"
  --cell "dsl-spec-t0.2: loss.name=dsl loss.temperature=0.2"
)
# rung 0b: the issue-7 knobs (temperature map, fused vs mixed, standardised κ logits,
# centred similarity) and CA at the SL temperature
RUNG0B=(
  --cell "dsl-t0.3-g0.5-linear: $D loss.temperature=0.3 loss.kappa_hard=0.0 loss.gamma=0.5 loss.temp_map=linear"
  --cell "dsl-t0.3-mix-kh-0.25-g0.5: $D loss.temperature=0.3 loss.kappa_hard=-0.25 loss.gamma=0.5 loss.combine=mix"
  --cell "dsl-t0.3-std-kh-0.25-g0.5: $D loss.temperature=0.3 loss.kappa_hard=-0.25 loss.gamma=0.5 loss.standardize=true"
  --cell "dsl-t0.3-std-ks-0.25-centered-g0.5: $D loss.temperature=0.3 loss.kappa_sim=-0.25 loss.sim_vectors=centered loss.standardize=true loss.gamma=0.5"
  --cell "dsl-t0.2-g0.5: $D loss.temperature=0.2 loss.kappa_hard=0.0 loss.gamma=0.5"
)

# the larger set, one seed: 30 epochs (its quickstart budget), the same global batch
ELEC=(--out "$OUT" --config configs/amazon2014-electronic.yaml --nproc 1 --parallel 2
      --set train.epochs=30 --set train.batch_size=2048 --seeds 0)
# SL τ 0.025 and 0.05 lost 25-60 % on every small set and τ 0.1 < 0.2 here already: the sharp
# end of the grid is left to the optional stage elec-sl-sharp
ELEC_SL=()
for t in 0.1 0.2 0.3 0.4; do ELEC_SL+=(--cell "sl-$t: loss.name=sl loss.temperature=$t"); done
ELEC_SL_SHARP=()
for t in 0.05 0.025; do ELEC_SL_SHARP+=(--cell "sl-$t: loss.name=sl loss.temperature=$t"); done
elec() { "$PY" bench/quality_sweep.py "${ELEC[@]}" "$@"; }
# finalists of the small sets on the larger set, at the same two temperatures
FINALISTS=(
  --cell "dsl-t0.2-g0.5: $D loss.temperature=0.2 loss.kappa_hard=0.0 loss.gamma=0.5"
  --cell "dsl-t0.3-g0.5: $D loss.temperature=0.3 loss.kappa_hard=0.0 loss.gamma=0.5"
)
# rung 0c: the CA branch alone led rung 0; its own knobs
RUNG0C=(
  --cell "dsl-t0.3-g0.25: $D loss.temperature=0.3 loss.kappa_hard=0.0 loss.gamma=0.25"
  --cell "dsl-t0.3-g1: $D loss.temperature=0.3 loss.kappa_hard=0.0 loss.gamma=1.0"
  --cell "dsl-t0.3-g0.5-dro: $D loss.temperature=0.3 loss.kappa_hard=0.0 loss.gamma=0.5 loss.dro_scale=true"
  --cell "dsl-t0.3-g0.5-slate50-r3: $D loss.temperature=0.3 loss.kappa_hard=0.0 loss.gamma=0.5 loss.slate_size=50 loss.temp_range=3.0"
  --cell "dsl-t0.3-g0.5-sigmoid: $D loss.temperature=0.3 loss.kappa_hard=0.0 loss.gamma=0.5 loss.intensity=sigmoid"
  --cell "dsl-t0.4-g0.5: $D loss.temperature=0.4 loss.kappa_hard=0.0 loss.gamma=0.5"
)
# rung 1: the two best temperatures of SL and the lead of rung 0 (the CA branch alone, γ 0.5)
# at the same two temperatures, on seeds 1 and 2 as well
RUNG1=(
  --cell "sl-0.2: loss.name=sl loss.temperature=0.2"
  --cell "sl-0.3: loss.name=sl loss.temperature=0.3"
  --cell "dsl-t0.2-g0.5: $D loss.temperature=0.2 loss.kappa_hard=0.0 loss.gamma=0.5"
  --cell "dsl-t0.3-g0.5: $D loss.temperature=0.3 loss.kappa_hard=0.0 loss.gamma=0.5"
)

# the OOD split moved SL's optimum down (τ 0.1 ≈ 0.2 > 0.3): one step sharper for both losses
OOD_EXTRA=(
  --cell "sl-0.05: loss.name=sl loss.temperature=0.05"
  --cell "dsl-t0.1-g0.5: $D loss.temperature=0.1 loss.kappa_hard=0.0 loss.gamma=0.5"
)

case "${1:-}" in
  rung0)
    sweep --data "beauty=$DATA/amazon2014-beauty" --seeds 0 "${SL[@]}" "${RUNG0[@]}" "${RUNG0_BEAUTY[@]}"
    sweep "${SMALL[@]}" --seeds 0 "${SL[@]}" "${RUNG0[@]}" ;;
  rung0b) sweep "${SMALL[@]}" --seeds 0 "${SL[@]}" "${RUNG0[@]}" "${RUNG0B[@]}" ;;
  rung0c) sweep "${SMALL[@]}" --seeds 0 "${SL[@]}" "${RUNG0[@]}" "${RUNG0B[@]}" "${RUNG0C[@]}" ;;
  elec-sl) elec --data "electronic=$DATA/amazon2014-electronic" "${ELEC_SL[@]}" ;;
  elec-sl-sharp) elec --data "electronic=$DATA/amazon2014-electronic" "${ELEC_SL_SHARP[@]}" ;;
  elec) elec --data "electronic=$DATA/amazon2014-electronic" "${ELEC_SL[@]}" "${FINALISTS[@]}" \
    --tune loss.temperature ;;
  ood) elec --data "electronic-ood=$DATA/amazon2014-electronic-ood" "${ELEC_SL[@]}" \
    "${FINALISTS[@]}" --tune loss.temperature ;;
  ood-extra) elec --data "electronic-ood=$DATA/amazon2014-electronic-ood" "${ELEC_SL[@]}" \
    "${FINALISTS[@]}" "${OOD_EXTRA[@]}" --tune loss.temperature ;;
  elec-seeds)  # the selected pair again on seeds 1 and 2 (a check, not a reselection)
    elec --data "electronic=$DATA/amazon2014-electronic" --seeds 0 1 2 \
      --cell "sl-0.3: loss.name=sl loss.temperature=0.3" \
      --cell "dsl-t0.3-g0.5: $D loss.temperature=0.3 loss.kappa_hard=0.0 loss.gamma=0.5"
    cp "$OUT/table.md" "$OUT/reports/electronic-seeds.md" ;;
  ood-sl) elec --data "electronic-ood=$DATA/amazon2014-electronic-ood" "${ELEC_SL[@]}" ;;
  rung1) sweep "${SMALL[@]}" --seeds 0 1 2 "${RUNG1[@]}" --tune loss.temperature ;;
  report0)  # rung 0 on the small sets (seed 0), and the earlier coarse random search on health
    mkdir -p "$OUT/reports"
    sweep --data "health=$DATA/amazon2014-health" --seeds 0 "${SL[@]}" \
      --space bench/spaces/dsl_coarse.yaml --random 14 --search-seed 0 --report-only
    cp "$OUT/table.md" "$OUT/reports/health-coarse.md"; cp "$OUT/sweep.png" "$OUT/reports/health-coarse.png"
    sweep "${SMALL[@]}" --seeds 0 "${SL[@]}" "${RUNG0[@]}" "${RUNG0_BEAUTY[@]}" "${RUNG0B[@]}" \
      "${RUNG0C[@]}" --cell "dsl-all-off-t0.2: $D loss.temperature=0.2 loss.gamma=0.0" \
      --tune loss.temperature --report-only
    cp "$OUT/table.md" "$OUT/reports/rung0.md"; cp "$OUT/sweep.png" "$OUT/reports/rung0.png" ;;
  report)  # rung 1 (3 seeds), electronic and its OOD split (1 seed)
    mkdir -p "$OUT/reports"
    sweep "${SMALL[@]}" --seeds 0 1 2 "${RUNG1[@]}" --tune loss.temperature --report-only
    cp "$OUT/table.md" "$OUT/reports/rung1.md"; cp "$OUT/sweep.png" "$OUT/reports/rung1.png"
    elec --data "electronic=$DATA/amazon2014-electronic" "${ELEC_SL[@]}" "${ELEC_SL_SHARP[@]}" \
      "${FINALISTS[@]}" --tune loss.temperature --report-only
    cp "$OUT/table.md" "$OUT/reports/electronic.md"; cp "$OUT/sweep.png" "$OUT/reports/electronic.png"
    elec --data "electronic-ood=$DATA/amazon2014-electronic-ood" "${ELEC_SL[@]}" \
      "${FINALISTS[@]}" "${OOD_EXTRA[@]}" --tune loss.temperature --report-only
    cp "$OUT/table.md" "$OUT/reports/electronic-ood.md"; cp "$OUT/sweep.png" "$OUT/reports/electronic-ood.png" ;;
  *) echo "usage: $0 rung0|rung0b|rung0c|rung1|elec-sl|elec-sl-sharp|ood-sl|elec|ood|report0|report" >&2; exit 2 ;;
esac
