"""Time reading Meta-Dataset records with and without CRC32C checks (docs/benchmarks.md).

Run from a clone: ``PYTHONPATH=. python docs/bench/records.py``.
"""

import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from litemeta.data.metadataset import MetaDatasetRecords
from litemeta.data.tfrecord import write_records
from tests.data.tf_example import make_example

rng = np.random.default_rng(0)
root = Path(tempfile.mkdtemp())
for size in (84, 224):
    folder = root / str(size)
    folder.mkdir()
    images = []
    for _ in range(200):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            buffer, "JPEG", quality=90
        )
        images.append(buffer.getvalue())
    write_records(folder / "0.tfrecords", [make_example(image=i, label=0) for i in images])
    spec = {
        "name": "s",
        "classes_per_split": {"TRAIN": 1},
        "images_per_class": {"0": 200},
        "class_names": {"0": "c"},
    }
    (folder / "dataset_spec.json").write_text(json.dumps(spec))
    kb = np.mean([len(i) for i in images]) / 1024
    row = [f"{size} px JPEG, {kb:.0f} KiB"]
    for verify in (False, True):
        records = MetaDatasetRecords(folder, verify_crc=verify)
        records.index_all()
        best = []
        for _ in range(5):
            start = time.perf_counter()
            for item in range(200):
                records.read_example(0, item)
            best.append((time.perf_counter() - start) / 200)
        row.append(f"{min(best) * 1e6:.1f}")
    records = MetaDatasetRecords(folder, decode_size=size)
    start = time.perf_counter()
    for item in range(200):
        records.read_item(0, item)
    row.append(f"{(time.perf_counter() - start) / 200 * 1e6:.0f}")
    print("| " + " | ".join(row) + " |")
