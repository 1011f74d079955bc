"""DICOM parsing, de-identification, annotations, dataset packages, synthetic phantoms.

Never imports torch or numpy: the browser runs these files under Pyodide
(scripts/build-static.mjs copies them), and the uploader's CLI runs without torch.
"""
