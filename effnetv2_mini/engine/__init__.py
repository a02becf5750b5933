"""The training machinery: configuration, run directories and resume, the loop,
checkpoints, torchrun, devices."""
