"""TransformerConfig.from_metadata refuses what the transformer does not implement instead of ignoring it."""

import pytest

from ltx2_nodes.errors import UnsupportedModelError
from ltx2_nodes.model.transformer import TransformerConfig


def test_non_causal_temporal_positioning_is_refused_not_ignored():
    assert TransformerConfig.from_metadata({"causal_temporal_positioning": True}) == TransformerConfig()
    with pytest.raises(UnsupportedModelError, match="causal_temporal_positioning=False"):
        TransformerConfig.from_metadata({"causal_temporal_positioning": False})
