"""sole_node: the ROS 2 front end of sole_ros, a lifecycle (managed) node.

configure loads the model and builds the scene map; activate starts subscriptions, publishers'
timers and the segmentation worker; deactivate and cleanup release them. With ``autostart`` (the
default) it configures and activates itself on start-up.

Everything here converts messages, parameters and services into calls on
sole_ros.pipeline.PerceptionPipeline; the perception itself is ROS-free.
"""

from __future__ import annotations

import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from std_srvs.srv import Trigger

from sole_ros.ros import parameters
from sole_ros.ros.callback_executor import PooledCallbackExecutor
from sole_ros.ros.node_diagnostics import NOT_ACTIVE, diagnostic_array, perception_status
from sole_ros.ros.node_inputs import NodeInputs
from sole_ros.ros.node_outputs import NodeOutputs, instance_msg
from sole_ros.srv import LoadScene, QueryObjects, SaveScene

# Callbacks that may run at once: queries waiting for a segmentation hold a thread each while the
# others keep ingesting; more requests wait in the middleware's queues.
CALLBACK_THREADS = 8
QUERY_SEGMENT_TIMEOUT = 300.0  # a query waits at most this long for the segmentation it needs (s)


class SoleNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("sole", **kwargs)
        parameters.declare_all(self)
        self._state_label = "unconfigured"
        self.pipeline = None
        self._model_error = ""
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._segmented = threading.Condition()
        self._last_segment_error = ""
        self._entities: list = []  # timers of the active state
        self._service_group = ReentrantCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()
        # Inputs (subscriptions of the active state, counters of every state) and outputs.
        self.inputs = NodeInputs(self, lambda: self.pipeline, self._timer_group)
        self.outputs = NodeOutputs(self, lambda: self.param("fixed_frame"))

        # Services exist in every state: outside "active" they answer with the reason.
        srv = dict(callback_group=self._service_group)
        self.create_service(QueryObjects, "~/query", self._on_query, **srv)
        self.create_service(Trigger, "~/segment", self._on_segment, **srv)
        self.create_service(Trigger, "~/reset", self._on_reset, **srv)
        self.create_service(SaveScene, "~/save_scene", self._on_save, **srv)
        self.create_service(LoadScene, "~/load_scene", self._on_load, **srv)

        # Diagnostics in every state, so a failed configure is visible there too.
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(
            self.param("output.diagnostics_period"),
            self._publish_diagnostics,
            callback_group=self._timer_group,
        )

        if self.param("autostart"):
            # Deferred to the first spin so the node is fully constructed first.
            self._autostart_timer = self.create_timer(
                0.0, self._autostart, callback_group=self._timer_group
            )

    # --- helpers --------------------------------------------------------------------------------
    def param(self, name: str):
        return self.get_parameter(name).value

    def _autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        # rclpy turns an exception in a transition into ERROR without a word: say why here
        configured = self.trigger_configure()
        if configured != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error(
                f"autostart: configure did not succeed ({configured.name}): "
                f"{self._model_error or 'see the error above'}; the node stays unconfigured"
            )
            return
        activated = self.trigger_activate()
        if activated != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error(f"autostart: activate did not succeed ({activated.name})")

    # --- lifecycle ------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            from sole_ros.pipeline import PipelineSettings, build_pipeline
        except Exception as error:  # a broken installation: a reason, not a silent ERROR
            self._model_error = f"the library does not import: {type(error).__name__}: {error}"
            self.get_logger().error(f"configure failed: {self._model_error}")
            return TransitionCallbackReturn.FAILURE

        values = {p.name: self.param(p.name) for p in parameters.PARAMETERS}
        problems = parameters.validate(values) + NodeInputs.problems(values)
        if problems:
            self._model_error = "; ".join(problems)
            self.get_logger().error(f"configure failed: {self._model_error}")
            return TransitionCallbackReturn.FAILURE
        try:
            settings = PipelineSettings.from_parameters(values)
            self.pipeline = build_pipeline(settings, log=self.get_logger().info)
        except Exception as error:  # a missing file or weights: a reason, not a crash
            self._model_error = f"model not loaded: {error}"
            self.get_logger().error(self._model_error)
            self.pipeline = None
            return TransitionCallbackReturn.FAILURE
        self._model_error = ""
        self._state_label = "inactive"
        contrast = ", ".join(settings.contrast_phrases) or "none (SOLE's binary query)"
        self.get_logger().info(
            f"configured: model on {self.pipeline.device}, fixed frame "
            f"'{values['fixed_frame']}', contrast phrases: {contrast}, test-time views: "
            f"{settings.test_time_views} at scene scale {settings.scene_scale}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.inputs.start()
        period = self.param("segmentation.period")
        if period > 0:
            self._entities.append(
                self.create_timer(period, self._wake.set, callback_group=self._timer_group)
            )
        if self.param("output.scene_period") > 0:
            self._entities.append(
                self.create_timer(
                    self.param("output.scene_period"),
                    lambda: self.outputs.publish_scene(self.pipeline),
                    callback_group=self._timer_group,
                )
            )
        self._stop.clear()
        self._worker = threading.Thread(
            target=self._segmentation_worker, name="sole-segmentation", daemon=True
        )
        self._worker.start()
        self._state_label = "active"
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_active()
        self._state_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_active()
        self.pipeline = None
        self._state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_active()
        self.pipeline = None
        self._state_label = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def _release_active(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None
        for timer in self._entities:
            self.destroy_timer(timer)
        self._entities = []
        self.inputs.stop()

    # --- segmentation worker --------------------------------------------------------------------
    def _segmentation_worker(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                break
            pipeline = self.pipeline
            if pipeline is None or not pipeline.needs_segmentation():
                with self._segmented:
                    self._segmented.notify_all()
                continue
            try:
                result = pipeline.segment()
                self._last_segment_error = ""
                self.get_logger().info(
                    f"segmented scene v{result.version}: {len(result.snapshot)} voxels "
                    f"in {result.seconds:.2f} s"
                )
                if self.param("output.full_segmentation"):
                    self.outputs.publish_instances(pipeline.full_segmentation(), result)
                if result.objects:
                    self.outputs.publish_objects(result)
            except Exception as error:  # keep the worker alive; report through diagnostics
                self._last_segment_error = str(error)
                self.get_logger().error(f"segmentation failed: {error}")
            with self._segmented:
                self._segmented.notify_all()

    def _request_segmentation(self, timeout: float) -> bool:
        """Wake the worker and wait until the map as it is now is segmented. A camera that keeps
        streaming changes the map meanwhile: waiting for the then-current version could last as
        long as the stream."""
        pipeline = self.pipeline
        if pipeline is None:
            return False
        target = pipeline.map.version

        def done() -> bool:
            current = pipeline.segmentation
            return current is not None and current.version >= target

        deadline = time.monotonic() + timeout
        with self._segmented:
            while not done():
                self._wake.set()
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._last_segment_error or self.pipeline is not pipeline:
                    break
                self._segmented.wait(timeout=min(remaining, 1.0))
        return done()

    # --- services -------------------------------------------------------------------------------
    def _inactive_reason(self) -> str | None:
        if self._state_label != "active":
            return self._model_error or NOT_ACTIVE.format(self._state_label)
        return None

    def _on_query(self, request: QueryObjects.Request, response: QueryObjects.Response):
        from sole_ros.pipeline import QueryLimits, QueryRejected

        response.header.frame_id = self.param("fixed_frame")
        reason = self._inactive_reason()
        limits = QueryLimits(self.param("query.max_phrases"), self.param("query.max_phrase_length"))
        try:
            phrases = limits.check(list(request.phrases))
            if reason:
                raise QueryRejected(reason)
            max_results = int(request.max_results) or self.param("query.default_max_results")
            self._refresh_if_stale()
            answer = self.pipeline.query(
                phrases, max_results=max_results, min_score=float(request.min_score)
            )
        except QueryRejected as error:
            response.success, response.message = False, str(error)
            return response
        except Exception as error:  # the model failed on this input: answer, do not crash
            self.get_logger().error(f"query failed: {error}")
            response.success, response.message = False, f"query failed: {error}"
            return response
        header = self.outputs.header(answer.stamp)
        coords = answer.segmentation.snapshot.coords
        colors = answer.segmentation.snapshot.colors
        response.header = header
        # the object memory's stable id; without the memory, the rank in this answer
        ids = answer.object_ids or list(range(len(answer.instances)))
        response.instances = [
            instance_msg(object_id, inst, header, coords, colors, request.include_points)
            for object_id, inst in zip(ids, answer.instances)
        ]
        self.outputs.remember_labels(answer.object_ids, answer.instances)
        response.success = True
        response.message = (
            f"{len(answer.instances)} instance(s) for {len(phrases)} phrase(s) "
            f"in scene v{answer.segmentation.version}"
        )
        if not self.param("output.full_segmentation"):
            self.outputs.publish_instances(answer.instances, answer.segmentation)
        return response

    def _refresh_if_stale(self) -> None:
        """Segment first when the last segmentation lags the map by more than query.max_staleness."""
        pipeline = self.pipeline
        if pipeline.segmentation_is_stale(self.param("query.max_staleness")):
            # A failure here still lets the query use the last finished segmentation, if any.
            self._request_segmentation(timeout=QUERY_SEGMENT_TIMEOUT)

    def _on_segment(self, request, response):
        reason = self._inactive_reason()
        if reason:
            response.success, response.message = False, reason
            return response
        if self.pipeline.map.num_voxels == 0:
            response.success, response.message = False, "no scene yet: nothing has been accumulated"
            return response
        self._last_segment_error = ""
        done = self._request_segmentation(timeout=600.0)
        seg = self.pipeline.segmentation
        if done and seg is not None:
            response.success = True
            response.message = (
                f"scene v{seg.version}: {len(seg.snapshot)} voxels in {seg.seconds:.2f} s"
            )
        else:
            response.success = False
            response.message = f"segmentation failed: {self._last_segment_error or 'timed out'}"
        return response

    def _on_reset(self, request, response):
        reason = self._inactive_reason() if self.pipeline is None else None
        if reason:
            response.success, response.message = False, reason
            return response
        self.pipeline.reset()
        response.success, response.message = True, "scene cleared"
        return response

    def _on_save(self, request, response):
        return self._scene_file_call(response, "save", request.path)

    def _on_load(self, request, response):
        return self._scene_file_call(response, "load", request.path)

    def _scene_file_call(self, response, action: str, name: str):
        """Save or load the scene as a file named inside scene.directory (SceneFolder's rules);
        every refusal or failure is answered with its reason, and the map stays as it was."""
        from sole_ros.scene.scene_folder import SceneFolder

        if self.pipeline is None:
            response.success, response.message = False, self._inactive_reason() or "not configured"
            return response
        folder = SceneFolder(self.param("scene.directory"))
        try:
            if action == "save":
                path = folder.path_to_save(name)
                self.pipeline.save(path)
                done = f"saved {self.pipeline.map.num_voxels} voxels to {path}"
            else:
                path = folder.path_to_load(name)
                self.pipeline.load(path)
                done = f"loaded {self.pipeline.map.num_voxels} voxels from {path}"
            response.success, response.message = True, done
        except Exception as error:  # noqa: BLE001 - whatever a request or a file does: a reason, never a crash
            reason = (
                str(error)
                if isinstance(error, (OSError, ValueError))
                else f"{type(error).__name__}: {error}"
            )
            response.success, response.message = False, f"could not {action} {name!r}: {reason}"
            self.get_logger().warning(response.message)
        return response

    # --- diagnostics ----------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        status = perception_status(
            self.get_fully_qualified_name(),
            self._state_label,
            self.inputs.diagnostic_values(),
            self.pipeline,
            self._model_error,
            self._last_segment_error,
        )
        self.diagnostics_pub.publish(diagnostic_array(status, self.get_clock().now().to_msg()))


def main(args=None) -> int:
    rclpy.init(args=args)
    node = SoleNode()
    executor = PooledCallbackExecutor(num_threads=CALLBACK_THREADS)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node._release_active()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
