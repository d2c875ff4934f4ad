"""The audience engine: uploads, matching jobs, audiences and their memberships."""
