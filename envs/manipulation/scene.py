"""The table-top scene every manipulation task shares, written as MJCF: a table, a three-axis end-effector
(a pusher finger on a rod, driven by position actuators on slide joints, i.e. end-effector position
control), a fixed camera, and the task's props.

Props are either *kinematic* (MuJoCo mocap bodies: cues, cubes to touch, cups; placed and moved by the task,
never pushed) or *free* (a free joint: cubes the end-effector pushes); flat discs (goals) are kinematic props
that collide with nothing. A prop can be hidden: its geoms are not drawn and stop colliding, so visibility
changes without moving anything.

Lights cast no shadows: in software (Mesa) rendering a shadow map costs about 10x the frame (DESIGN.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: table half-extent (x, y) in metres; the workspace the end-effector may reach is a little smaller
TABLE_HALF = (0.32, 0.26)
WORKSPACE_LOW = np.array([-0.24, -0.18, 0.012])
WORKSPACE_HIGH = np.array([0.24, 0.18, 0.20])
EE_START = np.array([0.0, -0.14, 0.08])
FINGER_RADIUS = 0.012

#: named colours (RGB in [0, 1]) distinguishable at 64x64; tasks draw their palettes from these, in order
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.75, 0.15),
    "blue": (0.10, 0.25, 0.95),
    "yellow": (0.95, 0.85, 0.10),
    "magenta": (0.85, 0.10, 0.85),
    "cyan": (0.10, 0.85, 0.90),
    "orange": (1.00, 0.50, 0.00),
    "white": (0.97, 0.97, 0.97),
    "black": (0.05, 0.05, 0.05),
}


@dataclass
class Prop:
    """A task object. ``geoms`` are (type, size, local pos, euler) in MJCF terms; all share ``rgba``."""

    name: str
    geoms: list[tuple[str, tuple[float, ...], tuple[float, float, float], tuple[float, float, float]]]
    rgba: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 1.0)
    free: bool = False  # free joint (pushable) instead of a kinematic mocap body
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    mass: float = 0.05
    friction: float = 0.8
    top: float = 0.0  # height of the prop's top above its base (set by the factories below)
    collide: bool = True  # False: drawn only (discs marking goals)


_UP = (0.0, 0.0, 0.0)  # no rotation


def box(name: str, half: float = 0.022, **kw) -> Prop:
    return Prop(name, [("box", (half, half, half), (0.0, 0.0, half), _UP)], top=2 * half, **kw)


def sphere(name: str, radius: float = 0.022, **kw) -> Prop:
    return Prop(name, [("sphere", (radius,), (0.0, 0.0, radius), _UP)], top=2 * radius, **kw)


def cylinder(name: str, radius: float = 0.02, half_length: float = 0.03, lying: bool = False, **kw) -> Prop:
    """Standing, or lying on its side along x (RememberShape's cylinder lies)."""
    if lying:
        return Prop(name, [("cylinder", (radius, half_length), (0.0, 0.0, radius), (0.0, math.pi / 2, 0.0))],
                    top=2 * radius, **kw)
    return Prop(name, [("cylinder", (radius, half_length), (0.0, 0.0, half_length), _UP)], top=2 * half_length, **kw)


def cup(name: str, radius: float = 0.035, height: float = 0.06, **kw) -> Prop:
    """An upside-down cup: a closed cylinder tall and wide enough to hide a ball placed under it."""
    return Prop(name, [("cylinder", (radius, height / 2), (0.0, 0.0, height / 2), _UP)], top=height, **kw)


def disc(name: str, radius: float = 0.05, **kw) -> Prop:
    """A flat disc lying on the table (a goal marker): kinematic, drawn, never in contact."""
    return Prop(name, [("cylinder", (radius, 0.001), (0.0, 0.0, 0.001), _UP)], top=0.002, collide=False, **kw)


def cross(name: str, half: float = 0.024, **kw) -> Prop:
    """Two flat bars crossing: a shape that reads differently from box, sphere and cylinder at 64x64."""
    t = half / 3
    return Prop(name, [("box", (half, t, t), (0.0, 0.0, t), _UP), ("box", (t, half, t), (0.0, 0.0, t), _UP)],
                top=2 * t, **kw)


@dataclass
class SceneSpec:
    props: list[Prop] = field(default_factory=list)
    width: int = 64
    height: int = 64
    timestep: float = 0.005


def _fmt(v) -> str:
    return " ".join(f"{float(x):.6g}" for x in v)


def build_mjcf(spec: SceneSpec) -> str:
    """The scene's MJCF. Names: ``ee`` (end-effector body), ``finger`` (its contact geom), ``ee_x/y/z`` (slide
    joints and their actuators), ``cam`` (the observation camera); props keep their names (body ``name``,
    geoms ``name/0``, ``name/1``, ...)."""
    tx, ty = TABLE_HALF
    lo, hi = WORKSPACE_LOW, WORKSPACE_HIGH
    parts = [f"""<mujoco model="rlmem_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{spec.timestep}" integrator="implicitfast"/>
  <visual>
    <global offwidth="{spec.width}" offheight="{spec.height}"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.45 0.45 0.45" specular="0 0 0"/>
    <quality shadowsize="0" numslices="16" numstacks="12" offsamples="0"/>
  </visual>
  <default>
    <geom solref="0.01 1" solimp="0.95 0.99 0.001" condim="3"/>
  </default>
  <worldbody>
    <light name="top" pos="0 0 1.2" dir="0 0 -1" directional="true" castshadow="false" diffuse="0.5 0.5 0.5"/>
    <geom name="table" type="box" size="{tx} {ty} 0.02" pos="0 0 -0.02" rgba="0.62 0.5 0.38 1" friction="0.5"/>
    <camera name="cam" pos="0 -0.27 0.40" xyaxes="1 0 0 0 0.77 0.64" fovy="40"/>
    <body name="ee" pos="0 0 0" gravcomp="1">
      <joint name="ee_x" type="slide" axis="1 0 0" range="{lo[0]} {hi[0]}" damping="8"/>
      <joint name="ee_y" type="slide" axis="0 1 0" range="{lo[1]} {hi[1]}" damping="8"/>
      <joint name="ee_z" type="slide" axis="0 0 1" range="{lo[2]} {hi[2]}" damping="8"/>
      <geom name="finger" type="sphere" size="{FINGER_RADIUS}" mass="0.3" rgba="0.15 0.15 0.15 1" friction="0.6"/>
      <geom name="rod" type="capsule" fromto="0 0 {FINGER_RADIUS} 0 0 0.07" size="0.005" mass="0.05"
            rgba="0.3 0.3 0.32 1" contype="0" conaffinity="0"/>
    </body>
"""]
    for p in spec.props:
        head = f'    <body name="{p.name}" pos="{_fmt(p.pos)}"' + ('' if p.free else ' mocap="true"') + '>'
        if p.free:
            head += f'<freejoint name="{p.name}"/>'
        geoms = "".join(
            f'<geom name="{p.name}/{i}" type="{t}" size="{_fmt(size)}" pos="{_fmt(pos)}" euler="{_fmt(euler)}" '
            f'rgba="{_fmt(p.rgba)}" friction="{p.friction}"'
            + (f' mass="{p.mass / len(p.geoms):.6g}"' if p.free else '') + '/>'
            for i, (t, size, pos, euler) in enumerate(p.geoms))
        parts.append(head + geoms + "</body>\n")
    parts.append(f"""  </worldbody>
  <actuator>
    <position name="ee_x" joint="ee_x" kp="400" ctrlrange="{lo[0]} {hi[0]}"/>
    <position name="ee_y" joint="ee_y" kp="400" ctrlrange="{lo[1]} {hi[1]}"/>
    <position name="ee_z" joint="ee_z" kp="400" ctrlrange="{lo[2]} {hi[2]}"/>
  </actuator>
</mujoco>
""")
    return "".join(parts)
