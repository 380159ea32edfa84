"""The synthetic gait world: identities with separately controllable body, motion and appearance,
rendered as walking sequences with ground truth (masks, COCO-17 keypoints, SMPL-24 joints, part maps).
"""
