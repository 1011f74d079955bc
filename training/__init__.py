"""Pure-Python side of MedChain: data, crypto, models, training, aggregation.

Importing this package must stay cheap and must not pull in torch: the
uploader's ingest pipeline imports ``training.dicom_ingest`` in a process
without torch. Import submodules explicitly.
"""
