"""Training tasks: objects following the Task protocol of :mod:`rnnkit.train`."""
