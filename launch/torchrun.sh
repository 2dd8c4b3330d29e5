#!/usr/bin/env bash
# dsl-train under torchrun, one node or several.
#   launch/torchrun.sh --nproc 2 -- --config configs/quickstart.yaml data.path=DIR
#   launch/torchrun.sh --nnodes 2 --node-rank 0 --rdzv-endpoint head:29500 --nproc 8 \
#       --max-restarts 3 -- --config configs/amazon2014-electronic.yaml
# Everything after `--` goes to dsl-train. Elastic restarts resume from the run's latest
# checkpoint.
set -euo pipefail
nnodes=1 node_rank=0 nproc=1 endpoint="" max_restarts=0
while [ $# -gt 0 ]; do
  case "$1" in
    --nnodes) nnodes=$2; shift 2 ;;
    --node-rank) node_rank=$2; shift 2 ;;
    --nproc) nproc=$2; shift 2 ;;
    --rdzv-endpoint) endpoint=$2; shift 2 ;;
    --max-restarts) max_restarts=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "launch/torchrun.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")/.." && pwd)
py="${PYTHON:-$here/.venv/bin/python}"
if [ "$nnodes" -eq 1 ] && [ -z "$endpoint" ]; then
  rdzv=(--standalone)
else
  [ -n "$endpoint" ] || { echo "launch/torchrun.sh: --rdzv-endpoint HOST:PORT is needed for --nnodes > 1" >&2; exit 2; }
  rdzv=(--nnodes="$nnodes" --node-rank="$node_rank" --rdzv-backend=c10d --rdzv-endpoint="$endpoint" --rdzv-id=dsl_torchrec)
fi
exec "$py" -m torch.distributed.run "${rdzv[@]}" --nproc-per-node="$nproc" \
  --max-restarts="$max_restarts" -m dsl_torchrec.train "$@"
