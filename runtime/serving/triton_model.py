"""The `melanomanet` model of a Triton model repository, run by Triton's Python backend: `mnet-export triton`
copies this file there as model.py. It decodes each request's image, explains it with `runtime` (probabilities,
MC uncertainty, GradCAM++, ABCD, the report) and answers with the report JSON, the probabilities and the
heatmap (and panel) PNGs. Triton's dynamic batcher hands it several requests at once: their images go through
the bundle together, and are decoded, explained and encoded on a thread per core.

Model parameters (config.pbtxt): `mode` standalone (the bundle in-process with ONNX Runtime, `backend` and
`threads` its providers and threads) or bls (the graph on the `onnx_model` Triton model); `bundle` (the ONNX
bundle, relative to the version folder, its sidecar beside it); `max_pixels` (larger images are refused
before decoding); `max_request_bytes` (a request whose image data is larger is refused before anything is
decoded); `sys_path` (folders that hold
`runtime` and its packages, separated by ':', when the Python Triton runs does not have them installed)."""

import json
import os
import site

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        for folder in filter(None, parameters.get("sys_path", "").split(os.pathsep)):
            site.addsitedir(folder)
        from concurrent.futures import ThreadPoolExecutor

        from runtime.predictor import Predictor

        self.pool = ThreadPoolExecutor(os.cpu_count() or 1)

        bundle = os.path.join(args["model_repository"], args["model_version"], parameters["bundle"])
        limit = int(parameters["max_pixels"])
        self.max_request_bytes = int(parameters["max_request_bytes"]) if parameters.get("max_request_bytes") else None
        audit = None
        if parameters.get("audit"):
            from runtime.audit import AuditLog, Identity

            audit = AuditLog(parameters["audit"], Identity(parameters.get("operator") or None,
                                                           parameters.get("device_id") or None,
                                                           parameters.get("log_names") == "true"),
                             int(parameters["audit_max_bytes"]) if parameters.get("audit_max_bytes") else None)
        if parameters.get("mode", "standalone") == "bls":
            from runtime.serving.bls import TritonBlsBackend

            self.predictor = Predictor(bundle, backend=TritonBlsBackend(bundle, parameters["onnx_model"], pb_utils),
                                       max_pixels=limit, audit=audit, trusted_keys=parameters.get("trusted_keys"))
        else:
            self.predictor = Predictor(bundle, backend=parameters.get("backend", "ort-cpu"),
                                       threads=int(parameters.get("threads", "0")), max_pixels=limit, audit=audit,
                                       trusted_keys=parameters.get("trusted_keys"))

    def execute(self, requests):
        from runtime.serving.protocol import IMAGE_INPUT, answer, is_client_error

        batch = [(pb_utils.get_input_tensor_by_name(request, IMAGE_INPUT).as_numpy(),
                  json.loads(request.parameters() or "{}")) for request in requests]
        replies = answer(self.predictor, batch, self.pool, self.max_request_bytes)
        del batch  # the requests' image bytes, refused or explained: released before the replies are sent
        responses = []
        for reply in replies:
            if isinstance(reply, dict):
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, value) for name, value in reply.items()]))
            else:
                code = pb_utils.TritonError.INVALID_ARG if is_client_error(reply) else pb_utils.TritonError.INTERNAL
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(reply), code)))
        return responses

    def finalize(self):
        self.pool.shutdown()
        self.predictor.close()
