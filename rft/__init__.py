"""Library code for the GRPO/SFT vision-language experiment suite (never imports Hydra)."""
