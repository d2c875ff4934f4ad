"""Using audiences: ad groups, include and exclude, membership serving, sharing, overlap."""
