"""Detection models, the reader over decrypted packages, train/evaluate loops, metrics.

The only part of ``training`` (with ``federated``) that imports torch.
"""
