"""Attacks on erased models: soft-prompt, concept-vector, discrete prompt attacks and adversarial prompt sets."""
