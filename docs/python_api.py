"""The Python API in five steps, on the MNI152 demo slices (runs in about a minute on a laptop CPU;
the test suite runs it as a script: ``python docs/python_api.py [WORK_DIR]``).

1. make a small data set, 2. train in one call, 3. load the best checkpoint, 4. segment an array
and look at what the agents did step by step, 5. segment a NIfTI volume and save every map.
"""

import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

import pixeldrl
from pixeldrl.data.demo import make_demo_dataset
from pixeldrl.data.images import read_image

work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="pixeldrl_api_"))

# 1. The demo data set: MNI152 T1 slices with white-matter masks, 32×32 to keep this quick.
counts = make_demo_dataset(work / "data", size=32)
print("data:", counts)

# 2. Train PixelDRL-MG (PA3C) with the small preset; the result holds the run folder and the
#    test split's metrics (summary.json).
run = pixeldrl.train(data=work / "data", preset="small", image_size=32, epochs=2, out=work / "run", progress=False)
print("test DICE:", round(run.summary["mean"]["DICE"], 3), "run folder:", run.folder)

# 3. Load the best checkpoint (torch.load with weights_only=True) on any device.
model = pixeldrl.load(run.best, device="cpu")
print(model)

# 4. Segment one image of any dtype and size: the mask, π(keep) and the mask after each step.
image = read_image(sorted((work / "data" / "test" / "images").iterdir())[0])
out = model.segment(image)
assert ((out.keep_prob > 0.5) == out.mask).all()  # the policy's own confidence agrees with the mask
for t, m in enumerate(out.steps, start=1):
    print(f"after step {t}: {m.mean():.1%} of the pixels kept")
print("removed at step:", np.bincount(out.removal_step.ravel()))

# 5. A volume: stack a few test slices into a NIfTI file, segment it slice by slice, save the mask,
#    the keep-probability, the steps and the step-of-removal map with the input's geometry.
slices = [read_image(p) for p in sorted((work / "data" / "test" / "images").iterdir())[:4]]
nib.save(nib.Nifti1Image(np.stack(slices, axis=-1), np.diag([1.0, 1.0, 2.0, 1.0])), work / "case.nii.gz")
vol = model.segment_volume(work / "case.nii.gz")
written = vol.save(work / "predictions")
print("wrote:", *[str(p.relative_to(work)) for p in written])
