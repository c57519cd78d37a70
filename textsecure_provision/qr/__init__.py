"""QR images of the provisioning link (§3): ``render`` draws, ``scan`` reads.

Image ⇄ link text, nothing more. Nothing is imported here, so importing the
package costs nothing; qrcode, Pillow and zxing-cpp load only when a function
that needs them runs.
"""
