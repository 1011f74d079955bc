"""Pure-Python side of MedChain: data, crypto, models, training, aggregation.

``crypto`` is shared at the top; then one subpackage per concern: ``ingest``
(DICOM, de-identification, annotations, dataset packages, phantoms),
``detection`` (models, reader, train/evaluate, metrics) and ``federated``
(updates, aggregation rules, differential privacy).

Importing this package must stay cheap and must not pull in torch: the
uploader's ingest pipeline imports ``training.ingest.dicom_ingest`` in a
process without torch. Import submodules explicitly.
"""
