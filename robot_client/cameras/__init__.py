"""Camera backends behind one interface: RealSense on hardware, MuJoCo renders in the sim."""
from robot_client.cameras.base import Camera, CameraIntrinsics, Frame

__all__ = ["Camera", "CameraIntrinsics", "Frame"]
