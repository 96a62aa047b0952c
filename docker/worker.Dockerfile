# A training worker: the lab's code on top of a CUDA build of PyTorch.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
WORKDIR /app
COPY pyproject.toml README.md ./
COPY idlab ./idlab
COPY backend ./backend
COPY worker ./worker
COPY frontend ./frontend
# torch is already in the image: install the rest without replacing it.
RUN pip install --no-cache-dir ".[server,engine]"
ENV IDLAB_DATA_DIR=/data
CMD ["idlab", "worker", "--queues", "gpu"]
