"""Two-tower retrieval model on TorchRec EmbeddingBagCollections.

The user and item tables are separate EBCs (``user_ebc``, ``item_ebc``) so each can be sharded and
looked up on its own: training looks up users once and items for positives + sampled negatives in
one call; evaluation looks up only items or only users. The towers are identity (matrix
factorisation); a later tower (MLP, history pooling) plugs in at ``user_tower`` / ``item_tower``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, PoolingType

USER_TABLE, ITEM_TABLE = "user", "item"
USER_FEATURE, ITEM_FEATURE = "user_id", "item_id"


def one_id_per_row(feature: str, ids: torch.Tensor) -> KeyedJaggedTensor:
    """KJT holding ``ids`` [N] int64 as N bags of one id each."""
    return KeyedJaggedTensor.from_lengths_sync(
        keys=[feature], values=ids.long(), lengths=torch.ones_like(ids, dtype=torch.int32)
    )


class TwoTower(nn.Module):
    def __init__(
        self, num_users: int, num_items: int, dim: int, score: str = "cosine",
        device: torch.device | str = "meta",
    ) -> None:
        super().__init__()
        self.score = score
        self.num_users, self.num_items, self.dim = num_users, num_items, dim
        self.user_ebc = EmbeddingBagCollection(
            tables=[EmbeddingBagConfig(
                name=USER_TABLE, embedding_dim=dim, num_embeddings=num_users,
                feature_names=[USER_FEATURE], pooling=PoolingType.SUM,
            )],
            device=torch.device(device),
        )
        self.item_ebc = EmbeddingBagCollection(
            tables=[EmbeddingBagConfig(
                name=ITEM_TABLE, embedding_dim=dim, num_embeddings=num_items,
                feature_names=[ITEM_FEATURE], pooling=PoolingType.SUM,
            )],
            device=torch.device(device),
        )
        self.user_tower: nn.Module = nn.Identity()
        self.item_tower: nn.Module = nn.Identity()

    def _finish(self, e: torch.Tensor) -> torch.Tensor:
        return F.normalize(e, dim=-1) if self.score == "cosine" else e

    def user_vectors(self, user_ids: torch.Tensor) -> torch.Tensor:
        """[N] ids -> [N, d] query vectors (L2-normalised for cosine)."""
        e = self.user_ebc(one_id_per_row(USER_FEATURE, user_ids))[USER_FEATURE]
        return self._finish(self.user_tower(e))

    def item_vectors(self, item_ids: torch.Tensor) -> torch.Tensor:
        """[N] ids -> [N, d] item vectors (L2-normalised for cosine)."""
        e = self.item_ebc(one_id_per_row(ITEM_FEATURE, item_ids))[ITEM_FEATURE]
        return self._finish(self.item_tower(e))

    def forward(self, user_ids: torch.Tensor, item_ids: torch.Tensor):
        return self.user_vectors(user_ids), self.item_vectors(item_ids)
