"""TikTok wire models: TikTok's field names live here and nowhere else."""
