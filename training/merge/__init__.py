"""The stage merge's pure parts: a stage's state as one flat vector, the seeded partition plan,
the reductions (weighted, robust, DiLoCo outer step) and the quantized exchange formats.

The network side (who sends what to whom) is `node.merging`; nothing here does I/O.
"""
