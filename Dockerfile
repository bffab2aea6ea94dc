# imagine: workers, web and bots in one image.
#   docker build --build-arg TORCH_INDEX=cpu   -t imagine .   (CPU torch)
#   docker build --build-arg TORCH_INDEX=cu124 -t imagine .   (CUDA 12.4 torch)
FROM python:3.11-slim

ARG TORCH_INDEX=cpu
ARG TORCH_VERSION=2.13.0

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

# torch first, from the index for the chosen build, so the project install reuses it.
RUN pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_INDEX}"

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
