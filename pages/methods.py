"""Methods: finished runs on one forget set side by side, as gaps to Retrain; and a one-click class demo."""

import streamlit as st

from pages import cache, session, widgets
from wsscl_core.data import ForgetSpec
from wsscl_core.methods import METHODS
from wsscl_core.studio import compare, plots, share

session.enter_page(__file__)

st.title("Methods side by side")
ws = session.workspace()
link = session.apply_link()
jobs = session.jobs()
classes = ws.data.classes

st.subheader("Class demo in one click")
demo = [METHODS[m].label for m in session.CLASS_DEMO_METHODS]
link_class = link.spec.classes[0] if link.spec is not None and link.spec.kind == "class" else None
left, right = st.columns([3, 1])
demo_class = left.selectbox("Class to forget", range(len(classes)), format_func=lambda i: f"{i}: {classes[i]}",
                            index=link_class if link_class is not None else session.DEFAULT_FORGET.classes[0],
                            key="methods_demo_class")
demo_seed = right.number_input("Seed", min_value=0, value=link.seed or 0, step=1, key="methods_demo_seed")
demo_spec = ForgetSpec("class", (int(demo_class),), seed=int(demo_seed))
shipped = session.has_reference(demo_spec, demo_spec.seed)
names = demo + ([] if shipped else ["Retrain"])
plan = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
st.write(f"Runs **{plan}** with their default settings, one after the other, on “{classes[demo_class]}”."
         + (" Retrain ships with the studio for this forget set, so it is not run." if shipped else
            " Retrain takes as long as training the original."))
if st.button(f"Run {plan} on class {demo_class}", type="primary", key="methods_demo", disabled=jobs.busy):
    if session.start_suite(demo_spec, demo_spec.seed):
        st.rerun()
job = jobs.current
if job is not None and job.kind == "unlearn" and (job.running or jobs.batch_total > 1):
    widgets.job_panel(job)

st.subheader("Compare finished runs")
groups = compare.comparable_groups(session.runs())
if not groups:
    st.info("No finished run yet in this session: run the class demo above, or runs on the Unlearn page.")
    st.stop()
keys = list(groups)
wanted = next((k for k in keys if link.spec is not None and k[0] == link.spec), keys[0])
key = keys[st.selectbox("Forget set", range(len(keys)), index=keys.index(wanted), key="methods_group",
                        format_func=lambda i: f"{keys[i][0]} (seed {keys[i][1]}) — {len(groups[keys[i]])} run(s)")]
records = groups[key]
candidates = [r for r in records if not r.is_retrain]
by_number = {r.number: r for r in candidates}
if link.fresh and link.methods:  # a shared link names the methods to compare
    st.session_state.methods_wanted = link.methods
wanted_methods = st.session_state.get("methods_wanted", ())
preferred = [r for r in candidates if r.unlearned.method in wanted_methods][-4:]
default = [r.number for r in (preferred or compare.default_selection(candidates))]
selection_key = f"methods_runs_{key[0]}_{key[1]}"
if st.session_state.get(f"{selection_key}_candidates") != list(by_number):  # new runs: back to the default pick
    st.session_state[f"{selection_key}_candidates"] = list(by_number)
    st.session_state[selection_key] = default
chosen = st.multiselect("Runs (two to four)", list(by_number), max_selections=4,
                        format_func=lambda n: by_number[n].title, key=selection_key)
selected = [by_number[n] for n in chosen]
if not selected:
    st.info("Pick at least one run.")
    st.stop()
retrain = next((compare.retrain_for(r, records) for r in selected if compare.retrain_for(r, records) is not None),
               None)
rows = {f"#{r.number} {r.unlearned.label}": r.unlearned.evaluation for r in selected}
widgets.share_box(session.write_link(share.to_query(key[0], methods=tuple(r.unlearned.method for r in selected))),
                  "this comparison of methods")

if retrain is None:
    st.info("No Retrain on this forget set yet, so the gaps are not defined; the differences below are to the "
            "original model instead. Run the class demo (it includes Retrain) or Retrain on the Unlearn page.")
    reference_name = "Original"
    reference = cache.original_evaluation(ws, records[0].split, records[0].request.seed)
else:
    reference_name, reference = retrain.label, retrain.evaluation
    gaps = compare.gap_table(rows, retrain.evaluation)
    widgets.table(gaps)
    st.plotly_chart(plots.gap_figure(gaps), key="methods_gaps")
    st.caption("**What to look for.** Bars near 0 on every metric: the run behaves like Retrain. A UA bar below 0 "
               "means the run still recognises forget images that Retrain gets wrong (not forgotten enough); an RA or "
               "TA bar below 0 is damage to what should be kept; MIA compares how unseen the forget images look.")

st.plotly_chart(plots.confusion_differences_figure(compare.confusion_differences(rows, reference), classes,
                                                   reference_name), key="methods_confusion")
st.caption(f"**What to look for.** Each panel is a run's test confusion minus {reference_name}'s: white means the "
           f"same counts. Blue cells are predictions the run makes more often than {reference_name}, red ones less often.")
mia_rows = ({reference_name: reference} if retrain is not None else {}) | rows
st.plotly_chart(plots.mia_figure(mia_rows), key="methods_mia")
st.caption("**What to look for.** The forget set's confidences (orange) should look like Retrain's panel.")
