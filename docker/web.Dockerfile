# The cabinet (routing/web): the REST API and the web console, `voffice web`.
# It is the media-server image (the same venv and code, and sox for converting uploaded sounds)
# with its own entrypoint and a state directory for the key that signs session cookies.
# Build with `make images` (after the media-server image), or from the repository root:
#   docker build -f docker/web.Dockerfile -t voffice/web .
FROM voffice/media-server

USER root
RUN install -d -o voffice -g voffice /var/lib/voffice/web
USER voffice
ENTRYPOINT ["voffice", "web"]
CMD ["--listen", "0.0.0.0:8080", "--state-dir", "/var/lib/voffice/web", "--media-dir", "/var/lib/voffice/media", \
     "--sounds-dir", "/var/lib/voffice/sounds"]
