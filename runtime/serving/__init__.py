"""Serving on NVIDIA Triton: the request/response contract (`protocol`), the Python-backend model
(`triton_model`, copied into model repositories), the launcher (`server`, `mnet serve`) and the client
(`client`, `mnet run --server`, `mnet bench --server`)."""

# How long a request may wait for batch mates in a repository for a GPU, where a batch is cheaper per image
# (`mnet serve` on a CPU defaults to 0: there, waiting only adds latency).
GPU_QUEUE_DELAY_US = 2000

# The largest request `mnet serve` takes by default (MiB of image data): Triton's own default HTTP input limit in
# the releases that have one. A dermoscopic JPEG at --max-pixels fits; a large PNG may need more.
DEFAULT_MAX_REQUEST_MB = 64
