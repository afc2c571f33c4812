#!/usr/bin/env python3
"""Checks deploy/k8s without a cluster: every manifest against the Kubernetes schemas
(kubernetes-validate --strict, from PyPI), and the references between them that a schema cannot
see: files the kustomization names (and those of every optional component under components/,
checked as if enabled), selectors that match pod labels, named ports that exist,
ConfigMaps and Secrets the generators make, images the kustomization rewrites, HPA and PDB
targets. Exits 1 with one line per problem.

    python3 deploy/check-k8s.py          # pip install kubernetes-validate pyyaml first
"""
import pathlib
import shutil
import subprocess
import tempfile
import sys

import yaml

root = pathlib.Path(__file__).resolve().parent / "k8s"
problems = []


def problem(text):
    problems.append(text)


def declared_ports(containers):
    """Every port the containers declare, by name and by number (a probe or Service may use either)."""
    ports = [port for container in containers for port in container.get("ports", [])]
    return {port.get("name") for port in ports} | {port["containerPort"] for port in ports}


kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
documents = []
for name in kustomization["resources"]:
    path = root / name
    if not path.exists():
        problem(f"kustomization.yaml names {name}, which does not exist")
        continue
    for document in yaml.safe_load_all(path.read_text()):
        if document:
            documents.append((name, document))

# Every component is checked as if enabled: its manifests join the others, its patches must name
# a workload and container that exist.
resource_files = list(kustomization["resources"])
patches = []
for component in sorted((root / "components").glob("*/kustomization.yaml")):
    spec = yaml.safe_load(component.read_text())
    folder = component.parent.relative_to(root)
    if spec.get("kind") != "Component":
        problem(f"{folder}/kustomization.yaml is not a kustomize Component")
    resource_files += [str(folder / name) for name in spec.get("resources", [])]
    for patch in spec.get("patches", []):
        path = root / folder / patch["path"]
        if not path.exists():
            problem(f"{folder} patches with {patch['path']}, which does not exist")
        else:
            patches.append((str(folder / patch["path"]), yaml.safe_load(path.read_text())))
for name in resource_files[len(kustomization["resources"]):]:
    path = root / name
    if not path.exists():
        problem(f"a component names {name}, which does not exist")
        continue
    for document in yaml.safe_load_all(path.read_text()):
        if document:
            documents.append((name, document))

generated = {"ConfigMap": set(), "Secret": set()}
for kind, key in [("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")]:
    for generator in kustomization.get(key, []):
        generated[kind].add(generator["name"])
        for source in generator.get("files", []) + generator.get("envs", []):
            if not (root / source.split("=")[-1]).exists():
                problem(f"{key} {generator['name']} reads {source}, which does not exist")
rewritten_images = {image["name"] for image in kustomization.get("images", [])}

by_kind = {}
for name, document in documents:
    by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = (name, document)

workloads = {**by_kind.get("Deployment", {}), **by_kind.get("StatefulSet", {})}
pod_labels = {}
for workload, (name, document) in workloads.items():
    spec = document["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    pod_labels[workload] = labels
    selector = spec["selector"]["matchLabels"]
    if any(labels.get(key) != value for key, value in selector.items()):
        problem(f"{name}: {workload}'s selector {selector} does not match its pod labels {labels}")
    pod = spec["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    claims = {claim["metadata"]["name"] for claim in spec.get("volumeClaimTemplates", [])}
    for volume in volumes.values():
        if "configMap" in volume and volume["configMap"]["name"] not in generated["ConfigMap"]:
            problem(f"{name}: {workload} mounts ConfigMap {volume['configMap']['name']}, which nothing makes")
    for container in pod["containers"]:
        image = container["image"].split(":")[0]
        if image not in rewritten_images and ":" not in container["image"]:
            problem(f"{name}: {workload}/{container['name']} uses image {container['image']} with no tag")
        ports = declared_ports([container])
        for probe_name in ["readinessProbe", "livenessProbe", "startupProbe"]:
            probe = container.get(probe_name, {})
            for handler in ["httpGet", "tcpSocket", "grpc"]:
                if handler in probe and probe[handler]["port"] not in ports:
                    problem(f"{name}: {workload}/{container['name']} {probe_name} uses port "
                            f"{probe[handler]['port']}, which the container does not declare")
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in volumes and mount["name"] not in claims:
                problem(f"{name}: {workload}/{container['name']} mounts {mount['name']}, which is no volume")
        for variable in container.get("env", []):
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference and reference["name"] not in generated["Secret"]:
                problem(f"{name}: {workload} reads Secret {reference['name']}, which nothing makes")
        for source in container.get("envFrom", []):
            reference = source.get("secretRef")
            if reference and reference["name"] not in generated["Secret"]:
                problem(f"{name}: {workload} reads Secret {reference['name']}, which nothing makes")

for service, (name, document) in by_kind.get("Service", {}).items():
    selector = document["spec"].get("selector", {})
    matches = [workload for workload, labels in pod_labels.items()
               if all(labels.get(key) == value for key, value in selector.items())]
    if not matches:
        problem(f"{name}: Service {service} selects {selector}, which no pod carries")
    for port in document["spec"]["ports"]:
        target = port.get("targetPort", port["port"])
        for workload in matches:
            containers = workloads[workload][1]["spec"]["template"]["spec"]["containers"]
            if target not in declared_ports(containers):
                problem(f"{name}: Service {service} targets port {target}, which {workload} does not declare")

for hpa, (name, document) in by_kind.get("HorizontalPodAutoscaler", {}).items():
    target = document["spec"]["scaleTargetRef"]
    if target["name"] not in by_kind.get(target["kind"], {}):
        problem(f"{name}: HPA {hpa} scales {target['kind']} {target['name']}, which does not exist")
    elif document["spec"]["minReplicas"] > document["spec"]["maxReplicas"]:
        problem(f"{name}: HPA {hpa} has minReplicas above maxReplicas")

for pdb, (name, document) in by_kind.get("PodDisruptionBudget", {}).items():
    selector = document["spec"]["selector"]["matchLabels"]
    if not any(all(labels.get(key) == value for key, value in selector.items()) for labels in pod_labels.values()):
        problem(f"{name}: PodDisruptionBudget {pdb} selects {selector}, which no pod carries")

for name, patch in patches:
    target = by_kind.get(patch["kind"], {}).get(patch["metadata"]["name"])
    if target is None:
        problem(f"{name} patches {patch['kind']} {patch['metadata']['name']}, which does not exist")
        continue
    present = {container["name"] for container in target[1]["spec"]["template"]["spec"]["containers"]}
    for container in patch["spec"]["template"]["spec"].get("containers", []):
        if container["name"] not in present:
            problem(f"{name} patches container {container['name']}, which {patch['metadata']['name']} lacks")

headless = by_kind.get("Service", {}).get("worker", (None, {}))[1]
if headless.get("spec", {}).get("clusterIP") != "None":
    problem("the worker Service must be headless (clusterIP: None) for the gateway's dns:// discovery")

files = [str(root / name) for name in resource_files if (root / name).exists()]
schema = subprocess.run(["kubernetes-validate", "--strict", "--quiet", "--kubernetes-version", "1.30.0", *files],
                        capture_output=True, text=True)
if schema.returncode != 0:
    problem("kubernetes-validate:\n" + (schema.stdout + schema.stderr).strip())

# Where kubectl is at hand, kustomize must also render the base and the base with every component.
if shutil.which("kubectl"):
    with tempfile.TemporaryDirectory() as scratch:
        enabled = pathlib.Path(scratch) / "k8s"
        shutil.copytree(root, enabled)
        spec = yaml.safe_load((enabled / "kustomization.yaml").read_text())
        spec["components"] = [str(path.parent.relative_to(root)) for path in (root / "components").glob("*/kustomization.yaml")]
        (enabled / "kustomization.yaml").write_text(yaml.safe_dump(spec))
        for folder in [root, enabled]:
            rendered = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True)
            if rendered.returncode != 0:
                problem(f"kubectl kustomize {folder.name}: {rendered.stderr.strip()}")

for line in problems:
    print(f"deploy/k8s: {line}")
if problems:
    sys.exit(1)
kinds = sorted(f"{len(items)} {kind}" for kind, items in by_kind.items())
print(f"deploy/k8s: {len(documents)} manifests valid and consistent ({', '.join(kinds)})")
