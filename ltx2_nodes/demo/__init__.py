"""Tiny random-weight demo models in the released layouts (``python -m ltx2_nodes demo-models``)."""
