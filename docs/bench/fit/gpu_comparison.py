"""The accounted peaks of the GPU section's 224 px benchmark steps (N = 1000 support and 20
query images, chunks of 64, query batches of 10, bf16 autocast, no optimiser) from the memory
planner's cost model, measured on this machine under bf16: docs/benchmarks.md, "What fits a
memory budget". Run from a clone: ``PYTHONPATH=. python docs/bench/fit/gpu_comparison.py``."""

import torch

from litemeta.device import place_on_device
from litemeta.learners import build_learner
from litemeta.training.memory_cost import measure_cost

MIB = 2**20
TASK_BYTES = (1000 + 20) * 3 * 224 * 224  # the task's uint8 images on the device

torch.set_num_threads(1)
for name in ("protonets", "simple_cnaps"):
    torch.manual_seed(0)
    learner = build_learner(name, "efficientnet_lite0", 224, pretrained=False)
    learner = place_on_device(learner, torch.device("cpu"))
    cost = measure_cost(learner, image_size=224, way=10, precision="bf16")
    with_gradients = cost.parameter_bytes + cost.trainable_bytes + TASK_BYTES
    inference = cost.parameter_bytes + TASK_BYTES + cost.working(64)  # a no-grad chunk of 64
    peaks = {
        "inference": inference,
        # a query batch of 10 (more than the 8 drawn rows, recomputed after it)
        "lite-8": max(inference, with_gradients + cost.saved(10) + cost.working(10)),
        # the 8 rows recomputed in the last query batch's pass: 18 images
        "lite-8-fused": max(inference, with_gradients + cost.saved(18) + cost.working(18)),
    }
    print(
        f"{name}: per image {cost.saved.slope / MIB:.2f} MiB saved, "
        f"{cost.working.slope / MIB:.2f} MiB working; saved for backward "
        f"{cost.saved(10) / MIB:.0f} (lite-8), {cost.saved(18) / MIB:.0f} (lite-8-fused) MiB; "
        + ", ".join(f"{mode} {peak / MIB:.0f} MiB" for mode, peak in peaks.items())
    )
