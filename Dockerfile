FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY adapters ./adapters
COPY bots ./bots
RUN pip install --no-cache-dir . && useradd --system --uid 10001 peakdesk
USER peakdesk
ENV PEAKDESK_HOST=0.0.0.0 PEAKDESK_LOG_FORMAT=json
EXPOSE 8080
CMD ["peakdesk", "serve", "--workers", "0"]
