#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Prophesee's tutorial "Using a Sequential DataLoader to Create a Training Loop", cell by cell, on evloader.

What changed from the notebook, and why:

* imports: ``metavision_ml.X`` / ``metavision_core.X`` are ``evloader.compat.metavision_ml.X`` /
  ``evloader.compat.metavision_core.X`` (the documented migration: nothing else in the cells changes);
* data: instead of downloading Prophesee's ``sample_dataset.zip``, ``get_sample("sim_dataset_precomputed")``
  generates a folder of the same shape (histo ``.h5`` tensor files of 640x360 at 50 ms, ``_bbox.npy`` labels,
  ``label_map_dictionary.json``) from evloader's simulated event camera, and the CDProcessorDataLoader cell
  streams simulated RAW recordings (``sim_street.raw``...) instead of ``driving_sample.raw``... (set
  ``TUTORIAL_PROPHESEE_SAMPLES=1`` and ``EVLOADER_SAMPLES_DIR`` to use Prophesee's files if you have them);
* ``np.bool`` (removed in numpy 1.24) is ``bool``; ``help()`` prints instead of paging;
* display: with ``DOC_DISPLAY=OFF`` (or without a GUI) frames are written as PNG files instead of windows;
* the training-loop pseudo-code runs for real, for a few steps, with evloader's small recurrent detector.

Run it from anywhere: ``python examples/python/tutorial.py`` (work files go to ``./evloader_tutorial``, or to
``TUTORIAL_DIR``). ``TUTORIAL_MAX_FRAMES`` caps the frames shown/written per visualisation (default 60),
``TUTORIAL_TRAIN_STEPS`` the training steps (default 4).
"""
import os
import pydoc
import sys

WORKDIR = os.path.abspath(os.environ.get("TUTORIAL_DIR", "evloader_tutorial"))
DISPLAY = os.environ.get("DOC_DISPLAY", "ON") != "OFF"
MAX_FRAMES = int(os.environ.get("TUTORIAL_MAX_FRAMES", "60"))
TRAIN_STEPS = int(os.environ.get("TUTORIAL_TRAIN_STEPS", "4"))
os.makedirs(WORKDIR, exist_ok=True)
os.chdir(WORKDIR)  # the tutorial works with paths relative to its folder


def show_frames(frames, window_name):
    """The tutorial's display loop (imshow, Esc to stop); frames to PNG files with DOC_DISPLAY=OFF or when
    OpenCV has no GUI (opencv-python-headless)."""
    global DISPLAY
    written = 0
    if DISPLAY:
        try:
            cv2.namedWindow(window_name)
        except cv2.error:
            print("(no GUI in this OpenCV: writing the frames to files instead)")
            DISPLAY = False
    for i, frame in enumerate(frames):
        if i >= MAX_FRAMES:
            break
        if DISPLAY:
            cv2.imshow(window_name, frame[..., ::-1])
            key = cv2.waitKey(1)
            if key == 27:
                break
        else:
            os.makedirs(window_name, exist_ok=True)
            cv2.imwrite(os.path.join(window_name, f"frame_{i:04d}.png"), frame[..., ::-1])
            written += 1
    if DISPLAY:
        cv2.destroyWindow(window_name)
    else:
        print(f"wrote {written} frames to {os.path.join(WORKDIR, window_name)}/")


# ## Import Libraries
import glob  # noqa: E402
from functools import partial  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from evloader.compat.metavision_ml.data import SequentialDataLoader  # noqa: E402
from evloader.compat.metavision_ml.data import box_processing as box_api  # noqa: E402

# ## Download the Data Sample (here: generate it)
from evloader.compat.metavision_core.utils import get_sample  # noqa: E402

dataset_path = get_sample("sim_dataset_precomputed")  # "dataset_precomputed" in the tutorial
# a dictionary containing the correspondence map for class indices
label_map_path = os.path.join(dataset_path, 'label_map_dictionary.json')
print(sorted(os.listdir(dataset_path)))  # the tutorial's `!ls`

# ## Load Labels
from evloader.compat.metavision_ml.data.sequential_dataset import load_labels_stub  # noqa: E402

print(pydoc.render_doc(load_labels_stub, renderer=pydoc.plaintext))  # help(load_labels_stub)


# ### Customize a Label Loading Function
def custom_load_boxes(metadata, batch_start_time, duration, tensor, **kwargs):
    # we first load the events from file
    box_events = box_api.load_box_events(metadata, batch_start_time, duration)

    # here, we just look in the class look up what is the corresponding number for each class
    # in order to get contiguous class numbers for our training dataset.
    class_lookup = kwargs['class_lookup']
    box_events['class_id'] = class_lookup[box_events['class_id']]

    # We then split the box events into each time bin in a list of box event array
    num_tbins = tensor.shape[0]
    box_events = box_api.split_boxes(box_events, batch_start_time=batch_start_time, delta_t=duration // num_tbins,
                                     num_tbins=num_tbins)
    # if all frames contain labels
    all_frames_are_okay = np.ones((len(box_events)), dtype=bool)  # np.bool in the tutorial
    return box_events, all_frames_are_okay


# the labels of the class we want to load from the dataset
wanted_keys = ['car', 'pedestrian', 'two wheeler']

# create a look up table to get the lookup IDs from the selected classes
class_lookup = box_api.create_class_lookup(label_map_path, wanted_keys)

custom_load_boxes_fn = partial(custom_load_boxes, class_lookup=class_lookup)

# ## Event-Based SequentialDataLoader
files = sorted(glob.glob(os.path.join(dataset_path, "*.h5")))[:2]  # (sorted: the same order on every machine)
preprocess_function_name = "histo"
delta_t = 50000
channels = 2  # histograms have two channels
num_tbins = 3
height, width = 360, 640
batch_size = 2
max_incr_per_pixel = 2.5
array_dim = [num_tbins, channels, height, width]

seq_dataloader = SequentialDataLoader(files, delta_t, preprocess_function_name, array_dim,
                                      load_labels=custom_load_boxes_fn,
                                      batch_size=batch_size, num_workers=0,
                                      preprocess_kwargs={"max_incr_per_pixel": max_incr_per_pixel})

for index, batch in enumerate(seq_dataloader):
    if index == 1:  # we only visualize one example, remove it if you want to process all data
        break
    print("available keys: ", batch.keys(), "\n")
    print("input shape:", batch["inputs"].shape, "\n")
    print("metadata:", batch["video_infos"], "\n")
    print("box events: ", len(batch['labels']), "lists (corresponding to the no. of time bins), each containing a "
          "batch sized lists :", [len(labels) for labels in batch['labels']])

# bounding boxes in the 2nd time bin of the 1st batch
print(batch['labels'][1][0])

# ### Visualization Utility of SequentialDataLoader
show_frames(seq_dataloader.show(), 'sequential_dataloader')


def draw_labels(frame, labels):
    """
    Args:
        frame (np.ndarray) frame of size height x width x 3
        labels: label for one file and one tbin

    Returns:
        The input frame on which the labels were drawn.
    """
    return frame


load_boxes_fn = partial(box_api.load_boxes, class_lookup=class_lookup)

seq_dataloader = SequentialDataLoader(files, delta_t, preprocess_function_name, array_dim, load_labels=load_boxes_fn,
                                      batch_size=batch_size, num_workers=0,
                                      preprocess_kwargs={"max_incr_per_pixel": max_incr_per_pixel})

from evloader.compat.metavision_ml.detection_tracking.display_frame import draw_box_events  # noqa: E402

label_map = ['background'] + wanted_keys

# adding box visualization. Notice how here again we rely on partial.
viz_labels = partial(draw_box_events, label_map=label_map)

show_frames(seq_dataloader.show(viz_labels), 'sequential_dataloader_boxes')

# ## Training Loop Example
# The tutorial's pseudo-code, run for TRAIN_STEPS batches with evloader's small recurrent detector
# (evloader.demo.model; `evloader demo` trains it for real). The targets are built from the labels by
# `compute_loss`, since this loader (like metavision_ml's) has no data['targets'].
import torch  # noqa: E402

from evloader.demo.model import RecurrentDetector, detection_loss  # noqa: E402

torch.manual_seed(0)
net = RecurrentDetector(in_channels=channels, num_classes=len(wanted_keys), width=16)
optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)


def compute_loss(predictions, labels):
    return detection_loss(predictions, labels, len(wanted_keys))["loss"]


for step, data in enumerate(seq_dataloader):
    if step == TRAIN_STEPS:
        break
    # we first need to reset the memory for each new sequence in the batch and detach the gradients
    # detaching the gradients prevents the computational graph to be as long as the full sequence.
    # This is called *truncated backpropagation*.
    net.reset(data['mask_keep_memory'])

    # clear the optimiser
    optimizer.zero_grad()

    # we compute the predictions chronologically. This is the forward pass.
    predictions = []
    for batch in data['inputs']:
        predictions.append(net.forward(batch))
    predictions = {key: torch.stack([p[key] for p in predictions]) for key in predictions[0]}

    # loss is computed only during relevant timestamps.
    labeled = data["frame_is_labeled"]
    if not labeled.any():
        continue
    t_idx, n_idx = torch.nonzero(labeled, as_tuple=True)
    targets = [data['labels'][t][n] for t, n in zip(t_idx.tolist(), n_idx.tolist())]
    loss = compute_loss({key: value[labeled] for key, value in predictions.items()}, targets)

    # we then compute the backward pass and update the networks weights.
    loss.backward()
    optimizer.step()
    print(f"step {step}: loss {loss.item():.3f}")
seq_dataloader.close()

# ## CDProcessorDataLoader
try:
    from evloader.compat.metavision_ml.data.cd_processor_dataset import CDProcessorDataLoader
except ImportError as error:  # the streaming loader may be missing from this build of evloader
    print(f"skipping the CDProcessorDataLoader part: {error}")
    sys.exit(0)

if os.environ.get("TUTORIAL_PROPHESEE_SAMPLES") == "1":
    # if the file doesn't exist, get_sample says where Prophesee's sample files come from
    files = ["driving_sample.raw", "hand_spinner.raw", "spinner.raw", "80_balls.raw"]
else:
    # simulated recordings, generated on first use
    files = ["sim_street.raw", "sim_traffic.raw", "sim_pedestrians.raw", "sim_crossing.raw"]

for file in files:
    get_sample(file)
    assert os.path.isfile(file)

dataloader = CDProcessorDataLoader(
    files,
    mode='n_events',
    delta_t=0,
    n_events=10000,
    max_duration=10000000,
    preprocess_function_name="diff",
    height=240,
    width=320,
    num_tbins=5,
    batch_size=4,
    num_workers=2,
    load_labels=None,
    padding_mode='zeros')

from evloader.compat.metavision_ml.data.sequential_dataset_common import show_dataloader  # noqa: E402

show = show_dataloader(
    dataloader,
    dataloader.height,
    dataloader.width,
    dataloader.batch_size,
    dataloader.get_vis_func(),
    None)

show_frames(show, 'stream_dataloader')
