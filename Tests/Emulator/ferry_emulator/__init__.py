"""A local AWS emulator for ferry's tests and demo: moto's S3 behind our own SigV4 check,
the Transfer Family connector operations moto lacks, and a real OpenSSH sshd as the SFTP partner."""
