"""Tasks: models + data + loss following the Task protocol of rnnkit.train."""
