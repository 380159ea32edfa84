"""Perception: what a video shows of its walker.

Stages (one module each, called by ``workflow/rules/<stage>.smk``): :mod:`.pose` (COCO-17 keypoints,
optionally the same pass's masks), :mod:`.masks` (person masks), :mod:`.silhouettes` (OpenGait 64×64),
:mod:`.skeleton_maps` (SkeletonGait heat maps), :mod:`.crops` (BigGait RGB crops) and
:mod:`.guidance` (the animators' driving signals). Below them: :mod:`.pose_backends` and
:mod:`.dwpose` (keypoint estimators), :mod:`.segmentation` (mask backends) and :mod:`.person`
(the combined pose + mask pass and frame-quality flags), which both the pose and masks stages use.
"""
