"""The uploader's whole path: phantoms -> ingest -> container -> encrypt -> grant, and back."""

from __future__ import annotations

import io

import pydicom

from training.crypto import (
    ContainerWriter,
    EncryptingWriter,
    WrappedKey,
    decrypt_stream,
    generate_data_key,
    generate_node_keypair,
    iter_container,
    unwrap_key,
    wrap_key,
)
from training.ingest.annotations import parse_annotations, remap_uids
from training.ingest.dicom_ingest import ingest_file
from training.ingest.phantoms import write_ct_dataset

DATASET = "0b8e3c2a-5f1d-4e7a-9c3b-2a1d0e9f8c7b"


def test_a_dataset_goes_up_encrypted_and_comes_back_de_identified(tmp_path):
    annotations_path = write_ct_dataset(
        tmp_path, profile="applicant", count=6, seed=9, rows=64, cols=64
    )
    ingested = [ingest_file(p, uid_secret=b"owner") for p in sorted(tmp_path.glob("*.dcm"))]
    sizes = {i.sop_uid_original: (i.rows, i.cols) for i in ingested}
    annotations = parse_annotations(annotations_path.read_bytes(), sizes)
    remapped = remap_uids(annotations, {i.sop_uid_original: i.sop_uid_new for i in ingested})

    data_key = generate_data_key()
    ciphertext = io.BytesIO()
    sink = EncryptingWriter(ciphertext, key=data_key, dataset_id=DATASET)
    container = ContainerWriter(sink)
    for instance in ingested:
        container.add(f"instances/{instance.sop_uid_new}.dcm", instance.data)
    container.add("annotations.json", remapped.to_json())
    container.close()
    chunks = sink.close()
    node_private, node_public = generate_node_keypair()
    grant = wrap_key(data_key, node_public, dataset_id=DATASET, node_id="node-1").to_bytes()

    # On the node: unwrap, decrypt, read back.
    key = unwrap_key(
        WrappedKey.from_bytes(grant), node_private, dataset_id=DATASET, node_id="node-1"
    )
    plain = io.BytesIO()
    decrypt_stream(
        io.BytesIO(ciphertext.getvalue()), plain, key=key, dataset_id=DATASET, chunks=chunks
    )
    entries = dict(iter_container(io.BytesIO(plain.getvalue())))
    images = {}
    for name, data in entries.items():
        if name.startswith("instances/"):
            ds = pydicom.dcmread(io.BytesIO(data))
            assert ds.PatientIdentityRemoved == "YES" and ds.PatientName == ""
            images[str(ds.SOPInstanceUID)] = (ds.Rows, ds.Columns)
    assert len(images) == 6
    assert parse_annotations(entries["annotations.json"], images) == remapped
    assert sum(len(b) for b in remapped.instances.values()) == sum(
        len(b) for b in annotations.instances.values()
    )
    for instance in ingested:
        assert instance.sop_uid_original.encode() not in plain.getvalue()
