# imagine: workers, web and bots in one image, with one of two torch builds of the same version:
#   docker build -t imagine:0.1.0-cuda .                                CUDA (the default)
#   docker build --build-arg TORCH_VARIANT=cpu -t imagine:0.1.0-cpu .   CPU only, far smaller
# cuda is PyPI's own Linux x86_64 torch wheel: built for CUDA 13.0, with the CUDA libraries as
# pip packages (several GB); the host needs an NVIDIA driver for CUDA 13 (R580 or newer) and
# the NVIDIA container toolkit. cpu comes from PyTorch's CPU index (the `+cpu` build).
FROM python:3.11-slim-bookworm

ARG TORCH_VARIANT=cuda
# The torch the tests run with: tests/run.sh and the README pin the same version.
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/models \
    IMAGINE_DATA_DIR=/data \
    IMAGINE_STORAGE_DIR=/data/images \
    IMAGINE_WEB_HOST=0.0.0.0

RUN useradd --create-home --uid 1000 imagine \
 && mkdir -p /models /data /app \
 && chown imagine:imagine /models /data /app

# torch first, the chosen build with its torchvision (spandrel needs it), so the project
# install reuses them.
RUN case "${TORCH_VARIANT}" in \
      cuda) pip install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" ;; \
      cpu)  pip install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" --index-url https://download.pytorch.org/whl/cpu ;; \
      *)    echo "TORCH_VARIANT must be cuda or cpu, not '${TORCH_VARIANT}'" >&2; exit 1 ;; \
    esac

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bots ./bots
COPY generator ./generator
COPY tasks ./tasks
COPY settings ./settings
RUN pip install .

USER imagine
VOLUME ["/models", "/data"]
EXPOSE 8080
ENTRYPOINT ["imagine"]
CMD ["up"]
