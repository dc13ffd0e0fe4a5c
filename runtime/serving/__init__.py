"""Serving on NVIDIA Triton: the request/response contract (`protocol`), the Python-backend model
(`triton_model`, copied into model repositories), the launcher (`server`, `mnet serve`) and the client
(`client`, `mnet run --server`, `mnet bench --server`)."""
