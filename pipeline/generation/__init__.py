"""Generation: the sweep plan (:mod:`.sweep`), the generation stage (:mod:`.generate`) and the
animators it drives (:mod:`.generators`: built-in controls, pose-warping baselines, GaitCrafter and the
upstream adapters)."""
